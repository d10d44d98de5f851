/// Per-request values available to a ``PromptTemplate``.
public struct PromptContext: Sendable {
    public var method: String
    public var host: String
    public var path: String
    public var query: String
    public var userKey: String?
    public var headers: HeaderList

    public init(
        method: String = "",
        host: String = "",
        path: String = "",
        query: String = "",
        userKey: String? = nil,
        headers: HeaderList = []
    ) {
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.userKey = userKey
        self.headers = headers
    }
}

/// 1-based position of a placeholder in a template (column counts Characters).
public struct TemplatePosition: Sendable, Hashable, CustomStringConvertible {
    public let line: Int
    public let column: Int

    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "line \(line), column \(column)" }
}

/// Compile-time template errors.
public enum PromptTemplateError: Error, Sendable, Hashable, CustomStringConvertible {
    /// `{{name}}` is not a known variable. `allowed` lists the valid forms.
    case unknownVariable(name: String, at: TemplatePosition, allowed: [String])
    /// `{{` without a matching `}}` (or another `{{` before the `}}`).
    case unterminatedPlaceholder(at: TemplatePosition)
    /// `{{header.NAME}}` with an empty or non-token NAME.
    case invalidHeaderName(name: String, at: TemplatePosition)
    /// `{{header.cookie}}`, `{{header.authorization}}` or
    /// `{{header.proxy-authorization}}` without `allowSensitiveHeaders: true`.
    case sensitiveHeader(name: String, at: TemplatePosition)

    public var description: String {
        switch self {
        case let .unknownVariable(name, at, allowed):
            return "unknown template variable '{{\(name)}}' at \(at); allowed: "
                + allowed.map { "{{\($0)}}" }.joined(separator: ", ")
        case let .unterminatedPlaceholder(at):
            return "unterminated '{{' at \(at): expected '}}'"
        case let .invalidHeaderName(name, at):
            return "invalid header name '\(name)' in '{{header.\(name)}}' at \(at)"
        case let .sensitiveHeader(name, at):
            return "header '\(name)' at \(at) is sensitive and may not enter a prompt "
                + "unless spec.prompt.allowSensitiveHeaders is true"
        }
    }
}

/// A compiled prompt template.
///
/// Syntax: literal text with placeholders `{{path}}`, `{{query}}`,
/// `{{method}}`, `{{host}}`, `{{user}}` (the sticky user key) and
/// `{{header.NAME}}` (first occurrence of request header NAME, matched
/// case-insensitively). Whitespace just inside the braces is ignored
/// (`{{ path }}`); variable names are case-sensitive. A lone `{` or `}}` is
/// literal; there is no escape for a literal `{{`.
///
/// Security: `cookie`, `authorization` and `proxy-authorization` headers
/// never enter a prompt unless the template was compiled with
/// `allowSensitiveHeaders: true`.
///
/// Rendering: missing values render as empty strings; substituted values are
/// inserted verbatim and never re-expanded (a header containing `{{path}}`
/// stays literal); the result is truncated to ``maxBytes`` UTF-8 bytes
/// (default 8 KiB) on a Unicode-scalar boundary.
public struct PromptTemplate: Sendable, Hashable {
    /// Default cap on the rendered prompt, in UTF-8 bytes.
    public static let defaultMaxBytes = 8 * 1024
    /// Headers rejected unless `allowSensitiveHeaders` is true (lower-case).
    public static let sensitiveHeaders: Set<String> = ["cookie", "authorization", "proxy-authorization"]
    /// Plain variable names (plus `header.NAME`).
    public static let variableNames = ["path", "query", "method", "host", "user"]
    static let allowedForms = variableNames + ["header.NAME"]

    /// The default template: describes the request without any user data.
    public static let defaultSource = """
        You are an assistant embedded in a legacy web application. \
        A user sent {{method}} {{path}} to {{host}} with query "{{query}}". \
        In two sentences, explain what this page is for and suggest one helpful next step.
        """

    /// ``defaultSource`` compiled with default options.
    public static let `default`: PromptTemplate = {
        do {
            return try PromptTemplate(compiling: defaultSource)
        } catch {
            // Unreachable: the default source is validated by the test suite.
            return PromptTemplate(source: defaultSource, segments: [.literal(defaultSource)], maxBytes: defaultMaxBytes)
        }
    }()

    public enum Segment: Sendable, Hashable {
        case literal(String)
        case path, query, method, host, user
        /// Lower-cased header name.
        case header(String)
    }

    public let source: String
    public let segments: [Segment]
    public let maxBytes: Int

    init(source: String, segments: [Segment], maxBytes: Int) {
        self.source = source
        self.segments = segments
        self.maxBytes = maxBytes
    }

    /// Compiles and validates `source`. `maxBytes` (clamped to ≥ 0) caps the rendered output.
    public init(
        compiling source: String,
        allowSensitiveHeaders: Bool = false,
        maxBytes: Int = PromptTemplate.defaultMaxBytes
    ) throws(PromptTemplateError) {
        self.source = source
        self.maxBytes = max(0, maxBytes)
        self.segments = try Self.parse(source, allowSensitiveHeaders: allowSensitiveHeaders)
    }

    /// Convenience for `try PromptTemplate(compiling:allowSensitiveHeaders:maxBytes:)`.
    public static func compile(
        _ source: String,
        allowSensitiveHeaders: Bool = false,
        maxBytes: Int = defaultMaxBytes
    ) throws(PromptTemplateError) -> PromptTemplate {
        try PromptTemplate(compiling: source, allowSensitiveHeaders: allowSensitiveHeaders, maxBytes: maxBytes)
    }

    static func parse(_ source: String, allowSensitiveHeaders: Bool) throws(PromptTemplateError) -> [Segment] {
        let bytes = Array(source.utf8)
        var segments: [Segment] = []
        var literalStart = 0
        var i = 0

        func isOpen(_ k: Int) -> Bool { k + 1 < bytes.count && bytes[k] == 0x7B && bytes[k + 1] == 0x7B }
        func isClose(_ k: Int) -> Bool { k + 1 < bytes.count && bytes[k] == 0x7D && bytes[k + 1] == 0x7D }
        func text(_ from: Int, _ to: Int) -> String { String(decoding: bytes[from..<to], as: UTF8.self) }
        func position(_ offset: Int) -> TemplatePosition {
            var line = 1
            var lineStart = 0
            for k in 0..<offset where bytes[k] == 0x0A {
                line += 1
                lineStart = k + 1
            }
            return TemplatePosition(line: line, column: text(lineStart, offset).count + 1)
        }

        while i < bytes.count {
            guard isOpen(i) else {
                i += 1
                continue
            }
            let open = i
            var j = i + 2
            while j < bytes.count, !isClose(j), !isOpen(j) { j += 1 }
            guard isClose(j) else { throw .unterminatedPlaceholder(at: position(open)) }
            if open > literalStart { segments.append(.literal(text(literalStart, open))) }

            let rawName = text(open + 2, j)
            let name = String(UserKeyExtractor.trimOWS(rawName[...]))
            switch name {
            case "path": segments.append(.path)
            case "query": segments.append(.query)
            case "method": segments.append(.method)
            case "host": segments.append(.host)
            case "user": segments.append(.user)
            default:
                guard name.hasPrefix("header.") else {
                    throw .unknownVariable(name: name, at: position(open), allowed: allowedForms)
                }
                let headerName = String(name.dropFirst("header.".count))
                guard !headerName.isEmpty, headerName.utf8.allSatisfy(isTokenByte) else {
                    throw .invalidHeaderName(name: headerName, at: position(open))
                }
                let lower = ASCIICase.lowercasedIfNeeded(headerName.utf8) ?? headerName
                if !allowSensitiveHeaders, sensitiveHeaders.contains(lower) {
                    throw .sensitiveHeader(name: lower, at: position(open))
                }
                segments.append(.header(lower))
            }
            i = j + 2
            literalStart = i
        }
        if literalStart < bytes.count { segments.append(.literal(text(literalStart, bytes.count))) }
        return segments
    }

    /// RFC 9110 `tchar`.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"),
             UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
             UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }

    /// Renders the template for one request (see type documentation).
    public func render(_ context: PromptContext) -> String {
        // The pieces' UTF-8 is gathered in one array sized for the whole prompt, then made a
        // String once (`String +=` costs some 350 instructions a piece, and copies as it grows).
        var estimate = 0
        for segment in segments {
            if case .literal(let s) = segment { estimate += s.utf8.count } else { estimate += 64 }
        }
        var output: [UInt8] = []
        output.reserveCapacity(min(maxBytes, estimate))
        for segment in segments {
            let piece: String
            switch segment {
            case .literal(let s): piece = s
            case .path: piece = context.path
            case .query: piece = context.query
            case .method: piece = context.method
            case .host: piece = context.host
            case .user: piece = context.userKey ?? ""
            case .header(let name):
                piece = UserKeyExtractor.headerValue(named: name, in: context.headers).map(String.init) ?? ""
            }
            if output.count + piece.utf8.count <= maxBytes {
                var piece = piece
                piece.withUTF8 { output.append(contentsOf: $0) }
                continue
            }
            // Truncate on a Unicode-scalar boundary and stop.
            for scalar in piece.unicodeScalars {
                if output.count + UTF8.width(scalar) > maxBytes { break }
                output.append(contentsOf: UTF8.encode(scalar)!)
            }
            break
        }
        return String(decoding: output, as: UTF8.self)
    }
}
