@testable import OverlayInject
import Testing

/// The injector's names are written as their words (no lazy globals in its loop): each must be
/// the name it stands for, and the raw-text lookup by length must find exactly those elements.
@Suite struct HTMLInjectorNamesTests {
    @Test func everyNameConstantIsItsText() {
        let constants = HTMLInjector.nameConstants
        #expect(constants.count == 14)
        for (text, value) in constants {
            #expect(value == NameBuffer(text), "\(text)")
            #expect(value.length == text.utf8.count, "\(text)")
        }
    }

    @Test func rawTextElementsAreFoundByName() {
        for name in HTMLInjector.rawTextElementNames {
            #expect(HTMLInjector.isRawTextElement(name), "\(name)")
            #expect(HTMLInjector.isRawTextElement(name.uppercased()), "\(name)")
        }
        for name in ["head", "body", "script", "template", "plaintext", "div", "titles", "styl", "xm", "noscripts", "textare", ""] {
            #expect(!HTMLInjector.isRawTextElement(name), "\(name)")
        }
    }
}
