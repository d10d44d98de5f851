import Foundation

extension AskRequest {
    private struct Wire: Decodable {
        var question: String?
        var title: String?
        var selection: String?
        var headings: [String]?
        var path: String?
    }

    /// Parses the JSON body; the error says what is wrong (for a 400 answer).
    public static func parse(_ body: [UInt8]) -> Result<AskRequest, AskRequestError> {
        guard body.count <= maxBodyBytes else {
            return .failure(AskRequestError("the body must be at most \(maxBodyBytes) bytes, got \(body.count)"))
        }
        let wire: Wire
        do {
            wire = try JSONDecoder().decode(Wire.self, from: Data(body))
        } catch {
            return .failure(AskRequestError(
                "the body must be a JSON object {\"question\": string, \"title\"?, \"selection\"?, \"headings\"?: [string], \"path\"?}"))
        }
        guard let question = wire.question?.trimmingCharacters(in: .whitespacesAndNewlines), !question.isEmpty else {
            return .failure(AskRequestError("\"question\" is required and must not be empty"))
        }
        return .success(AskRequest(
            question: question, title: wire.title ?? "", selection: wire.selection ?? "", headings: wire.headings ?? [],
            path: wire.path ?? ""))
    }
}

public struct AskRequestError: Error, Sendable, Equatable {
    public var message: String
    public init(_ message: String) { self.message = message }
}
