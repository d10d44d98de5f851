import Synchronization

/// A one-slot hand-over between the task that reads the upstream and the task that writes to the
/// client: `send` returns only once the reader took the element, so at most one upstream chunk is
/// ever held between the two sides (backpressure reaches the upstream socket).
///
/// Either side may end it: the producer with ``finish(throwing:)`` after its last element (nil) or
/// on an upstream error; the consumer side (the client connection closed) with an error, which
/// fails a waiting `send` and `next`.
final class Handoff<Element: Sendable>: Sendable {
    private struct State {
        var item: Element?
        var ended = false
        var error: (any Error)?
        var reader: CheckedContinuation<Element?, any Error>?
        var writer: CheckedContinuation<Void, any Error>?
    }

    private let state = Mutex(State())

    private enum SendStep {
        case fail(any Error)
        case deliver(CheckedContinuation<Element?, any Error>)
        case wait
    }

    private enum NextStep {
        case take(Element, CheckedContinuation<Void, any Error>?)
        case end((any Error)?)
        case wait
    }

    /// Hands `element` to the reader; returns when it was taken. Throws when the hand-over ended.
    func send(_ element: Element) async throws {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let next: SendStep = state.withLock { state in
                    if state.ended { return .fail(state.error ?? CancellationError()) }
                    if let reader = state.reader {
                        state.reader = nil
                        return .deliver(reader)
                    }
                    state.item = element
                    state.writer = continuation
                    return .wait
                }
                switch next {
                case .fail(let error): continuation.resume(throwing: error)
                case .deliver(let reader):
                    reader.resume(returning: element)
                    continuation.resume()
                case .wait: break
                }
            }
        } onCancel: {
            finish(throwing: CancellationError())
        }
    }

    /// The next element; nil once the producer finished; throws the error it ended with.
    func next() async throws -> Element? {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Element?, any Error>) in
                let next: NextStep = state.withLock { state in
                    if let item = state.item {
                        state.item = nil
                        defer { state.writer = nil }
                        return .take(item, state.writer)
                    }
                    if state.ended { return .end(state.error) }
                    state.reader = continuation
                    return .wait
                }
                switch next {
                case .take(let item, let writer):
                    writer?.resume()
                    continuation.resume(returning: item)
                case .end(let error?): continuation.resume(throwing: error)
                case .end(nil): continuation.resume(returning: nil)
                case .wait: break
                }
            }
        } onCancel: {
            finish(throwing: CancellationError())
        }
    }

    /// Ends the hand-over: a waiting reader gets nil (no error) or the error; with an error, a
    /// waiting writer fails and an element not yet taken is dropped. Later calls are ignored.
    func finish(throwing error: (any Error)? = nil) {
        let (reader, writer): (CheckedContinuation<Element?, any Error>?, CheckedContinuation<Void, any Error>?) =
            state.withLock { state in
                if state.ended { return (nil, nil) }
                state.ended = true
                state.error = error
                let reader = state.reader
                state.reader = nil
                var writer: CheckedContinuation<Void, any Error>?
                if error != nil {
                    state.item = nil
                    writer = state.writer
                    state.writer = nil
                }
                return (reader, writer)
            }
        if let reader {
            if let error { reader.resume(throwing: error) } else { reader.resume(returning: nil) }
        }
        writer?.resume(throwing: error ?? CancellationError())
    }
}
