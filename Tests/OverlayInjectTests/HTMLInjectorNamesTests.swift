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

    /// The end tags of script and raw-text elements are matched by `isLettersSpelled`, which takes
    /// names of at most 8 letters: every such name is one, and it matches in any case and nothing else.
    @Test func rawTextEndTagNamesAreSpelledByLetters() {
        for name in HTMLInjector.rawTextElementNames + ["script"] {
            #expect(name.utf8.count <= 8 && name.utf8.allSatisfy { $0 >= 0x61 && $0 <= 0x7A }, "\(name)")
            let value = NameBuffer(name)
            for spelling in [name, name.uppercased(), name.prefix(1).uppercased() + name.dropFirst()] {
                let bytes = Array(("x" + spelling + ">").utf8)
                #expect(bytes.withUnsafeBufferPointer { value.isLettersSpelled(by: $0, at: 1) }, "\(spelling)")
            }
            for other in [String(name.dropLast()) + "!", String(name.dropLast()) + "-", "0" + name.dropFirst()] {
                let bytes = Array(other.utf8)
                #expect(!bytes.withUnsafeBufferPointer { value.isLettersSpelled(by: $0, at: 0) }, "\(other)")
            }
        }
        #expect(!NameBuffer("plaintext").isLettersSpelled(by: UnsafeBufferPointer(start: nil, count: 0), at: 0))
    }
}
