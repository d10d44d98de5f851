import OverlayDecisions
import Testing

private let context = PromptContext(
    method: "GET",
    host: "shop.example",
    path: "/orders/42",
    query: "page=2",
    userKey: "alice",
    headers: [
        (name: "Accept-Language", value: "de-CH"),
        (name: "x-evil", value: "{{path}} {{header.cookie}}"),
        (name: "Cookie", value: "sid=secret"),
        (name: "Authorization", value: "Bearer token"),
        (name: "accept-language", value: "fr"),
    ]
)

@Suite("PromptTemplate")
struct PromptTemplateTests {
    @Test("renders every variable; header names are case-insensitive; first header occurrence wins")
    func renderAll() throws {
        let t = try PromptTemplate.compile(
            "{{method}} {{host}}{{path}}?{{query}} for {{user}} lang={{header.ACCEPT-language}}|{{ path }}")
        #expect(t.render(context) == "GET shop.example/orders/42?page=2 for alice lang=de-CH|/orders/42")
    }

    @Test("missing values render as empty strings")
    func missing() throws {
        let t = try PromptTemplate.compile("[{{user}}][{{header.x-none}}][{{query}}]")
        #expect(t.render(PromptContext()) == "[][][]")
    }

    @Test("no recursive expansion: substituted values stay literal")
    func noRecursion() throws {
        let t = try PromptTemplate.compile("v={{header.x-evil}}")
        #expect(t.render(context) == "v={{path}} {{header.cookie}}")
    }

    @Test("unknown variable error names the variable, its position and the allowed list")
    func unknown() {
        #expect(throws: PromptTemplateError.unknownVariable(
            name: "pathh", at: TemplatePosition(line: 2, column: 4),
            allowed: ["path", "query", "method", "host", "user", "header.NAME"]
        )) {
            try PromptTemplate.compile("first line\nab {{pathh}}")
        }
        do {
            _ = try PromptTemplate.compile("{{Path}}")
            Issue.record("expected an error")
        } catch {
            #expect(error.description == "unknown template variable '{{Path}}' at line 1, column 1; allowed: "
                + "{{path}}, {{query}}, {{method}}, {{host}}, {{user}}, {{header.NAME}}")
        }
    }

    @Test("unterminated '{{' is reported at the opening braces")
    func unterminated() {
        #expect(throws: PromptTemplateError.unterminatedPlaceholder(at: TemplatePosition(line: 1, column: 7))) {
            try PromptTemplate.compile("héllo {{path")
        }
        #expect(throws: PromptTemplateError.unterminatedPlaceholder(at: TemplatePosition(line: 1, column: 1))) {
            try PromptTemplate.compile("{{path {{query}}")
        }
        #expect(throws: PromptTemplateError.unterminatedPlaceholder(at: TemplatePosition(line: 1, column: 3))) {
            try PromptTemplate.compile("a {{")
        }
    }

    @Test("invalid header names are rejected")
    func invalidHeader() {
        #expect(throws: PromptTemplateError.invalidHeaderName(name: "", at: TemplatePosition(line: 1, column: 1))) {
            try PromptTemplate.compile("{{header.}}")
        }
        #expect(throws: PromptTemplateError.invalidHeaderName(name: "a b", at: TemplatePosition(line: 1, column: 1))) {
            try PromptTemplate.compile("{{header.a b}}")
        }
    }

    @Test(
        "cookie / authorization / proxy-authorization are rejected unless explicitly allowed",
        arguments: ["cookie", "Cookie", "AUTHORIZATION", "proxy-authorization"]
    )
    func sensitive(name: String) throws {
        let source = "x {{header.\(name)}}"
        #expect(throws: PromptTemplateError.sensitiveHeader(name: name.lowercased(), at: TemplatePosition(line: 1, column: 3))) {
            try PromptTemplate.compile(source)
        }
        let allowed = try PromptTemplate.compile(source, allowSensitiveHeaders: true)
        #expect(!allowed.render(context).isEmpty)
    }

    @Test("sensitive headers render when allowed")
    func sensitiveAllowed() throws {
        let t = try PromptTemplate.compile("{{header.cookie}}|{{header.authorization}}", allowSensitiveHeaders: true)
        #expect(t.render(context) == "sid=secret|Bearer token")
    }

    @Test("literal braces that are not placeholders pass through")
    func literals() throws {
        let t = try PromptTemplate.compile("{a} }} { {path} ok")
        #expect(t.render(context) == "{a} }} { {path} ok")
        #expect(try PromptTemplate.compile("").render(context) == "")
    }

    @Test("rendered output is capped at 8 KiB on a Unicode-scalar boundary")
    func cap() throws {
        let t = try PromptTemplate.compile("abc{{path}}tail")
        let big = PromptContext(path: String(repeating: "€", count: 5_000))  // 3 bytes each
        let out = t.render(big)
        #expect(PromptTemplate.defaultMaxBytes == 8_192)
        #expect(out.utf8.count == 8_190)  // 3 + 2_729 × 3; a 2_730th "€" would need 8_193 bytes
        #expect(out == "abc" + String(repeating: "€", count: 2_729))
        let exact = try PromptTemplate.compile("ab{{path}}tail").render(big)
        #expect(exact.utf8.count == 8_192)  // 2 + 2_730 × 3 fits exactly; "tail" is dropped
        let small = try PromptTemplate.compile("{{path}}!", maxBytes: 5)
        #expect(small.render(PromptContext(path: "abc")) == "abc!")
        #expect(small.render(PromptContext(path: "abcdef")) == "abcde")
        let literalCap = try PromptTemplate.compile("0123456789", maxBytes: 4)
        #expect(literalCap.render(context) == "0123")
    }

    @Test("the default template compiles, uses no user data and renders the request")
    func defaultTemplate() throws {
        let compiled = try PromptTemplate.compile(PromptTemplate.defaultSource)
        #expect(compiled == PromptTemplate.default)
        #expect(!PromptTemplate.default.segments.contains(.user))
        #expect(PromptTemplate.default.render(context) ==
            "You are an assistant embedded in a legacy web application. A user sent GET /orders/42 to shop.example "
            + "with query \"page=2\". In two sentences, explain what this page is for and suggest one helpful next step.")
    }
}
