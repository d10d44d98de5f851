import OverlayInject
import Testing

/// A page with `@@HERE@@` where the snippet must be inserted (absent for
/// `.alreadyPresent`).
struct Fixture: CustomTestStringConvertible, Sendable {
    let name: String
    let marked: String
    let outcome: HTMLInjector.Outcome
    var testDescription: String { name }

    static let here = "@@HERE@@"

    var input: [UInt8] { bytes(marked.replacingAll(Self.here, with: "")) }
    var expectedOffset: Int? {
        guard let r = marked.utf8.firstRange(of: Self.here.utf8) else { return nil }
        return marked.utf8.distance(from: marked.utf8.startIndex, to: r.lowerBound)
    }
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let r = rest.firstRange(of: target) {
            result += rest[..<r.lowerBound]
            result += replacement
            rest = rest[r.upperBound...]
        }
        return result + rest
    }
}

let snippetString = String(decoding: testSnippet, as: UTF8.self)
let hugeAttribute = String(repeating: "x>'</head>", count: 40)

let fixtures: [Fixture] = [
    Fixture(name: "page with head", marked: """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Legacy</title>
        <link rel="stylesheet" href="/app.css">
        @@HERE@@</head>
        <body class="app"><p>Hello</p></body></html>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "no head, body with attributes", marked: """
        <html><body class="main" onload="init()" data-x='a>b' data-y="</body>" z=1>@@HERE@@
        <div>content</div></body></html>
        """, outcome: .afterBodyStart),
    Fixture(name: "no head, no body", marked: "<div>fragment</div><p>more <b>text</b></p>\n@@HERE@@", outcome: .atEnd),
    Fixture(name: "only </body>", marked: "<html><div>x</div>@@HERE@@</BODY></html>", outcome: .beforeBodyEnd),
    Fixture(name: "head end tag in comment first", marked: """
        <html><head><!-- old layout: </head><body> --><title>t</title>@@HERE@@</head><body>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "</head> inside script string", marked: """
        <head><script>var s = "</head><body>"; if (a < b && c > d) { x = '</body>'; }</script>@@HERE@@</head><body>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "script end needs delimiter", marked: """
        <head><script>a = "</scripts>"; b = "</script-x></head>";</SCRIPT\t>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "script escaped / double escaped", marked: """
        <head><script><!-- <script> </script> </head> --></script>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "inside title", marked: "<head><title>About </head> and <body> tags</title>@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "inside style", marked: "<head><style>a::after{content:\"</head>\"}</style >@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "inside textarea", marked: """
        <html><form><textarea name=t>
        </head>
        <body>
        </textarea ><body>@@HERE@@<p>x</p></body>
        """, outcome: .afterBodyStart),
    Fixture(name: "inside attribute values", marked: """
        <html><head><meta content="</head>" name='x</head><body>'><link href=a</head>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "uppercase tags", marked: "<HTML><HEAD><TITLE>X</TITLE>@@HERE@@</HEAD\n><BODY>y</BODY>", outcome: .beforeHeadEnd),
    Fixture(name: "end tag forms", marked: "<head><p>x</p>@@HERE@@</head/>", outcome: .beforeHeadEnd),
    Fixture(name: "template containing </head>", marked: """
        <html><head><template><p></head><body></body></p><template></head></template></head></template>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "CDATA", marked: "<head><![CDATA[ </head> <body> ]]>@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "doctype and bogus comments", marked: """
        <!DOCTYPE html><?php echo "</head>" ?><!x </head>></ head>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "bogus comments contain <", marked: "<head><?x <</head> ?><!x <</body> ><!DOCTYPE <</head>>@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "abrupt comment <!-->", marked: "<head><!-->@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "abrupt comment <!--->", marked: "<head><!--->@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "comment closed by --!>", marked: "<head><!-- </head> --!>@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "comment with dashes", marked: "<head><!-- a -- </head> - --- </head> ---->@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "unterminated comment to EOF", marked: "<html><head><!-- </head><body></body>@@HERE@@", outcome: .atEnd),
    Fixture(name: "unterminated tag to EOF", marked: "<html><head><meta content=\"</head><body>@@HERE@@", outcome: .atEnd),
    Fixture(name: "empty input", marked: "@@HERE@@", outcome: .atEnd),
    Fixture(name: "already contains the snippet", marked: "<html><head>\(snippetString)</head><body></body>", outcome: .alreadyPresent),
    Fixture(name: "marker attribute uppercase", marked: "<html><HEAD><Div DATA-OVERLAYD=\"1\"></div></head>", outcome: .alreadyPresent),
    Fixture(name: "marker on body tag", marked: "<html><body class=a data-overlayd>", outcome: .alreadyPresent),
    Fixture(name: "marker only in comment/raw text/value", marked: """
        <head><!-- <p data-overlayd> --><script>"<p data-overlayd>"</script><p title="data-overlayd" data-overlayd-x></p ></p data-overlayd><template><i data-overlayd></i></template>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "marker after insertion point", marked: "<head>@@HERE@@</head><body><p data-overlayd></p>", outcome: .beforeHeadEnd),
    Fixture(name: "header and bodyguard", marked: """
        <html><head></header></heads></headx></bod></header><title>t</title>@@HERE@@</head><body>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "header and bodyguard without head", marked: """
        <html><header>top</header><bodyguard x=1>g</bodyguard><bodyx><p>@@HERE@@</body>
        """, outcome: .beforeBodyEnd),
    Fixture(name: "stray < before the end tag", marked: "<head>a < b << c <@@HERE@@</head>", outcome: .beforeHeadEnd),
    Fixture(name: "huge attribute > maxHoldBack", marked: """
        <html><head><meta content="\(hugeAttribute)" data-long='\(hugeAttribute.replacingAll("'", with: "\""))'><link data-x=\(String(repeating: "z", count: 300))>@@HERE@@</head>
        """, outcome: .beforeHeadEnd),
    Fixture(name: "huge body start tag", marked: "<html><body data-a=\"\(hugeAttribute)\">@@HERE@@x", outcome: .afterBodyStart),
    Fixture(name: "plaintext swallows the rest", marked: "<html><plaintext></head><body></body>@@HERE@@", outcome: .atEnd),
    Fixture(name: "self-closing script still raw", marked: "<head><script/></head></script>@@HERE@@</head>", outcome: .beforeHeadEnd),
]

@Suite struct HTMLInjectorFixtureTests {
    @Test(arguments: fixtures)
    func insertionPointIsExact(_ fixture: Fixture) throws {
        let input = fixture.input
        let result = runWhole(input)
        #expect(result.outcome == fixture.outcome)
        #expect(result.offset == fixture.expectedOffset)
        if let offset = fixture.expectedOffset {
            let stripped = try #require(removingSnippet(result.output, at: offset))
            #expect(stripped == input)
        } else {
            #expect(result.output == input)
        }
    }

    @Test(arguments: fixtures)
    func everyChunkSizeGivesTheSameOutput(_ fixture: Fixture) {
        let input = fixture.input
        let whole = runWhole(input)
        for size in 1...max(1, input.count) {
            let chunked = run(input, chunkSizes: [size])
            #expect(chunked.output == whole.output, "chunk size \(size)")
            #expect(chunked.outcome == whole.outcome, "chunk size \(size)")
            #expect(chunked.offset == whole.offset, "chunk size \(size)")
            #expect(chunked.maxHeld < 64, "chunk size \(size)")
            if whole.outcome != .afterBodyStart {
                #expect(chunked.maxHeld <= HTMLInjector.requiredHoldBack, "chunk size \(size)")
            }
        }
    }

    @Test func holdsOnlyTheEndTagPrefix() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<head><title>x</title></hea")) == bytes("<head><title>x</title>"))
        #expect(injector.heldBackCount == 5)
        #expect(injector.outcome == .pending)
        #expect(injector.feed(bytes("d")) == [])
        #expect(injector.heldBackCount == 6)
        #expect(injector.feed(bytes(">rest")) == bytes("[S]</head>rest"))
        #expect(injector.heldBackCount == 0)
        #expect(injector.outcome == .beforeHeadEnd)
        #expect(injector.injected)
        #expect(injector.insertionOffset == 22)
        #expect(injector.feed(bytes("</head>")) == bytes("</head>"))
        #expect(injector.finish() == [])
        #expect(injector.finish() == [])
    }

    @Test func releasesHeldBytesAsSoonAsTheNameDiverges() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<p></he")) == bytes("<p>"))
        #expect(injector.feed(bytes("a")) == [])
        #expect(injector.feed(bytes("der>")) == bytes("</header>"))
        #expect(injector.feed(bytes("</b")) == [])
        #expect(injector.feed(bytes("x>")) == bytes("</bx>"))
        #expect(injector.feed(bytes("<")) == [])
        #expect(injector.feed(bytes("p")) == bytes("<p"))
        #expect(injector.outcome == .pending)
    }

    @Test func afterBodyStartLooksForAnExistingSnippet() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<body class=\"a>b\"")) == bytes("<body class=\"a>b\""))
        #expect(injector.heldBackCount == 0)
        #expect(injector.feed(bytes(">")) == bytes(">"))
        #expect(injector.outcome == .pending)
        #expect(injector.feed(bytes("\n<p")) == [])
        #expect(injector.heldBackCount == 3)
        #expect(injector.feed(bytes(" id=x>tail")) == bytes("[S]\n<p id=x>tail"))
        #expect(injector.outcome == .afterBodyStart)
        #expect(injector.insertionOffset == 18)
    }

    @Test func textRightAfterBodyInjectsAtOnce() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<BODY>x")) == bytes("<BODY>[S]x"))
        #expect(injector.insertionOffset == 6)
    }

    @Test func snippetRightAfterBodyIsDetected() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<body> <i data-overlayd")) == bytes("<body>"))
        #expect(injector.outcome == .pending)
        #expect(injector.feed(bytes("=1>")) == bytes(" <i data-overlayd=1>"))
        #expect(injector.outcome == .alreadyPresent)
        #expect(!injector.injected)
        #expect(injector.insertionOffset == nil)
        #expect(injector.finish() == [])
    }

    @Test func lookAfterBodyIsBoundedByMaxHoldBack() {
        var injector = HTMLInjector(snippet: bytes("[S]"), maxHoldBack: 10)
        let spaces = [UInt8](repeating: 0x20, count: 30)
        #expect(injector.feed(bytes("<body>") + spaces) == bytes("<body>[S]") + spaces)
        #expect(injector.outcome == .afterBodyStart)
        var tiny = HTMLInjector(snippet: bytes("[S]"), maxHoldBack: 10)
        #expect(tiny.feed(bytes("<body><p data-overlayd>")) == bytes("<body>[S]<p data-overlayd>"))
    }

    @Test func finishWhileLookingAfterBodyInjectsAfterBody() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<body> <p")) == bytes("<body>"))
        #expect(injector.finish() == bytes("[S] <p"))
        #expect(injector.outcome == .afterBodyStart)
        #expect(injector.insertionOffset == 6)
    }

    @Test func heldBytesAreReturnedByFinish() {
        var injector = HTMLInjector(snippet: bytes("[S]"))
        #expect(injector.feed(bytes("<p></head")) == bytes("<p>"))
        #expect(injector.finish() == bytes("</head[S]"))
        #expect(injector.outcome == .atEnd)
        #expect(injector.insertionOffset == 9)
    }

    @Test func tinyMaxHoldBackIsRaisedToTheRequiredMinimum() {
        let injector = HTMLInjector(snippet: [], maxHoldBack: 0)
        #expect(injector.maxHoldBack == HTMLInjector.requiredHoldBack)
        let input = bytes("<head></head>")
        let result = run(input, chunkSizes: [1], maxHoldBack: 0)
        #expect(result.outcome == .beforeHeadEnd)
        #expect(result.offset == 6)
        #expect(result.maxHeld == 6)
    }

    @Test func reinjectingOurOwnOutputIsANoOp() {
        for fixture in fixtures where fixture.outcome != .alreadyPresent && fixture.outcome != .atEnd {
            let first = runWhole(fixture.input)
            let second = runWhole(first.output)
            #expect(second.outcome == .alreadyPresent, "\(fixture.name)")
            #expect(second.output == first.output, "\(fixture.name)")
        }
    }

    @Test func staticInjectMatchesStreaming() {
        let page = bytes("<html><head></head></html>")
        let (output, outcome) = HTMLInjector.inject(bytes("[S]"), into: page)
        #expect(output == bytes("<html><head>[S]</head></html>"))
        #expect(outcome == .beforeHeadEnd)
    }
}
