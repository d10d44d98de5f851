import OverlayCore
import Testing

@testable import OverlayFleet

/// The YAML the control plane stores and serves (`DesiredState.yaml`) reads back as the state it
/// was written from, whatever the strings look like to a YAML 1.1 reader.
@Suite struct DesiredStateYAMLTests {
    /// Found by the `config-loader` fuzz target (crash-17681082…): a model named by an explicitly
    /// tagged string (`!!str on`) is a valid name; written out plain, `on` would read back as a
    /// boolean and the state would be rejected. The writer quotes every string that would read as
    /// something else.
    @Test func stringsThatReadAsOtherTypesStayStrings() throws {
        let names = ["on", "off", "yes", "no", "null", "true", "1", "0x1f", "0o17", "1.5", "1e3", "2026-12-04"]
        var text = ""
        for name in names {
            text += """
                ---
                apiVersion: orchestrator.io/v1
                kind: AIModel
                metadata: {name: !!str \(name)}
                spec: {provider: mock}

                """
        }
        text += """
            ---
            apiVersion: orchestrator.io/v1
            kind: AIOverlay
            metadata: {name: apps}
            spec:
              hostApp: "*.apps.example.com"
              models: [{name: !!str on, weight: 50}, {name: !!str yes, weight: 50}]
              strategy: Canary

            """
        let original = try ConfigLoader.load(text: text, source: "fuzz.yaml")
        let state = try DesiredState.parse(yaml: text, source: "fuzz.yaml")
        let reloaded = try state.validate(source: "written.yaml")
        #expect(reloaded.overlays == original.overlays)
        #expect(reloaded.models == original.models)
        #expect(Set(reloaded.models.keys) == Set(names))
    }
}
