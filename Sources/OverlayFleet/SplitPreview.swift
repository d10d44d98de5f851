import OverlayDecisions

/// Which of the 10,000 sticky buckets move to another model when an overlay's weights change,
/// computed by the same ``StickySplitter`` the sidecars use (`GET /v1/split-preview`).
public struct SplitPreview: Sendable, Equatable {
    public struct Move: Sendable, Equatable {
        public var from: String
        public var to: String
        public var buckets: Int
        /// Half-open bucket ranges `[lower, upper)` that move.
        public var ranges: [Range<Int>]
    }

    public var moved: Int
    public var moves: [Move]

    public init(overlay: String, from old: [(name: String, weight: Int)], to new: [(name: String, weight: Int)]) {
        let before = StickySplitter(salt: overlay, arms: old)
        let after = StickySplitter(salt: overlay, arms: new)
        var moves: [Move] = []
        var bucket = 0
        while bucket < StickySplitter.bucketCount {
            let from = before.isEmpty ? "" : before.arms[before.arm(forBucket: bucket)].name
            let to = after.isEmpty ? "" : after.arms[after.arm(forBucket: bucket)].name
            var end = bucket + 1
            while end < StickySplitter.bucketCount,
                (before.isEmpty ? "" : before.arms[before.arm(forBucket: end)].name) == from,
                (after.isEmpty ? "" : after.arms[after.arm(forBucket: end)].name) == to
            {
                end += 1
            }
            if from != to {
                if let index = moves.firstIndex(where: { $0.from == from && $0.to == to }) {
                    moves[index].buckets += end - bucket
                    moves[index].ranges.append(bucket..<end)
                } else {
                    moves.append(Move(from: from, to: to, buckets: end - bucket, ranges: [bucket..<end]))
                }
            }
            bucket = end
        }
        self.moves = moves
        self.moved = moves.reduce(0) { $0 + $1.buckets }
    }

    public var json: String {
        let list = moves.map { move in
            let first = move.ranges.first ?? 0..<0
            let ranges = move.ranges.map { "[\($0.lowerBound),\($0.upperBound)]" }.joined(separator: ",")
            return "{\"from\":\(JSONText.quote(move.from)),\"to\":\(JSONText.quote(move.to)),\"buckets\":\(move.buckets),"
                + "\"range\":[\(first.lowerBound),\(first.upperBound)],\"ranges\":[\(ranges)]}"
        }
        return "{\"moved\":\(moved),\"moves\":[\(list.joined(separator: ","))]}\n"
    }
}
