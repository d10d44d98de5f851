import Foundation
import OverlayCore
import Testing
import Yams

@testable import OverlayFleet

/// The demo's state: two overlays and two models.
let demoState: DesiredState = {
    do { return try DesiredState.parse(yaml: EmbeddedDemo.text, source: "demo") } catch { fatalError("\(error)") }
}()

func json(_ text: String) throws(APIError) -> Node { try ResourceJSON.parse(Array(text.utf8)) }

let newOverlay = """
    {"apiVersion": "orchestrator.io/v1", "kind": "AIOverlay", "metadata": {"name": "crm"},
     "spec": {"hostApp": "crm.example.com", "models": [{"name": "mock-fast", "weight": 100}]}}
    """

@Suite struct ChangePlannerTests {
    @Test func demoStateHasItsResourcesInOrder() {
        #expect(demoState.resources.map { "\($0.kind.rawValue)/\($0.name)" } == [
            "AIOverlay/demo-canary", "AIOverlay/demo-shadow", "AIModel/mock-fast", "AIModel/mock-smart",
        ])
    }

    @Test func yamlRoundTripsThroughTheValidator() throws {
        let again = try DesiredState.parse(yaml: demoState.yaml, source: "again")
        #expect(again == demoState)
        #expect(try demoState.validate().overlays.map(\.name) == ["demo-canary", "demo-shadow"])
    }

    @Test func jsonKeepsTypesAndOrder() throws {
        let node = try json(#"{"b": 1, "a": "1", "c": true, "d": null, "e": 0.5, "f": [1, "x"]}"#)
        #expect(ResourceJSON.render(node) == #"{"b":1,"a":"1","c":true,"d":null,"e":0.5,"f":[1,"x"]}"#)
        // A string that reads as a number in plain YAML is quoted in the document.
        let yaml = try Yams.serialize(node: ResourceJSON.block(node))
        #expect(yaml.contains("a: \"1\""))
    }

    @Test(arguments: ["{", "[1 2]", "{\"a\":1,\"a\":2}", "", "nul"])
    func malformedJSONIs400(_ text: String) {
        #expect(throws: APIError.self) { try json(text) }
        do { _ = try json(text) } catch { #expect(error.status == 400) }
    }

    @Test func createAppendsAndSummarises() throws {
        let next = try ChangePlanner.apply(.create(.overlay, json(newOverlay)), to: demoState, version: 4)
        #expect(next.overlays.map(\.name) == ["demo-canary", "demo-shadow", "crm"])
        #expect(StateDiff.summary(from: demoState, to: next) == "created AIOverlay crm")
    }

    @Test func createOfAnExistingNameIs409WithTheVersion() throws {
        let body = try json(newOverlay.replacingOccurrences(of: "\"crm\"", with: "\"demo-canary\""))
        do {
            _ = try ChangePlanner.apply(.create(.overlay, body), to: demoState, version: 7)
            Issue.record("expected 409")
        } catch {
            #expect(error.status == 409)
            #expect(error.currentVersion == 7)
        }
    }

    @Test func invalidValuesAre422WithEveryProblemAndPath() throws {
        let body = try json(
            """
            {"apiVersion": "orchestrator.io/v1", "kind": "AIOverlay", "metadata": {"name": "bad"},
             "spec": {"hostApp": "bad.example.com", "models": [{"name": "a", "weight": 120}, {"name": "b", "weight": "x"}],
                      "colour": "red"}}
            """)
        do {
            _ = try ChangePlanner.apply(.create(.overlay, body), to: demoState, version: 1)
            Issue.record("expected 422")
        } catch {
            #expect(error.status == 422)
            let paths = Set(error.problems.map(\.path))
            #expect(paths.contains("AIOverlay bad: spec.models[0].weight"))
            #expect(paths.contains("AIOverlay bad: spec.models[1].weight"))
            #expect(paths.contains("AIOverlay bad: spec.colour"))
        }
    }

    @Test func replaceOfAnUnknownNameIs404AndARenameIs422() throws {
        do {
            _ = try ChangePlanner.apply(.replace(.overlay, name: "nope", try json(newOverlay)), to: demoState, version: 1)
            Issue.record("expected 404")
        } catch { #expect(error.status == 404) }
        let renamed = try json(newOverlay.replacingOccurrences(of: "crm.example.com", with: "localhost"))
        do {
            _ = try ChangePlanner.apply(.replace(.overlay, name: "demo-canary", renamed), to: demoState, version: 1)
            Issue.record("expected 422")
        } catch {
            #expect(error.status == 422)
            #expect(error.problems.first?.path == "AIOverlay demo-canary: metadata.name")
        }
    }

    @Test func wrongKindOnTheCollectionIs422() throws {
        let body = try json(newOverlay.replacingOccurrences(of: "\"AIOverlay\"", with: "\"AIModel\""))
        do {
            _ = try ChangePlanner.apply(.create(.overlay, body), to: demoState, version: 1)
            Issue.record("expected 422")
        } catch {
            #expect(error.status == 422)
            #expect(error.problems.first?.path == "AIOverlay crm: kind")
        }
    }

    @Test func weightsChangeOnlyWeightsAndSayHow() throws {
        let next = try ChangePlanner.apply(
            .setWeights(overlay: "demo-canary", weights: [("mock-fast", 50), ("mock-smart", 50)]), to: demoState, version: 1)
        #expect(StateDiff.summary(from: demoState, to: next) == "weights of demo-canary: mock-fast 80→50, mock-smart 20→50")
        #expect(try next.validate().overlays[0].models.map(\.weight) == [50, 50])
    }

    @Test func weightsMustNameEveryModelAndSumTo100() throws {
        let cases: [([(model: String, weight: Int)], String)] = [
            ([("mock-fast", 100)], "weights"),
            ([("mock-fast", 50), ("mock-smart", 50), ("other", 0)], "weights.other"),
            ([("mock-fast", 150), ("mock-smart", -50)], "weights.mock-fast"),
            ([("mock-fast", 60), ("mock-smart", 60)], "AIOverlay demo-canary: spec.models"),
        ]
        for (weights, path) in cases {
            do {
                _ = try ChangePlanner.apply(.setWeights(overlay: "demo-canary", weights: weights), to: demoState, version: 1)
                Issue.record("expected 422 for \(weights)")
            } catch {
                #expect(error.status == 422)
                #expect(error.problems.map(\.path).contains(path), "\(error.problems)")
            }
        }
        do {
            _ = try ChangePlanner.apply(.setWeights(overlay: "nope", weights: []), to: demoState, version: 1)
            Issue.record("expected 404")
        } catch { #expect(error.status == 404) }
    }

    @Test func deleteAndImport() throws {
        let next = try ChangePlanner.apply(.delete(.overlay, name: "demo-shadow"), to: demoState, version: 1)
        #expect(StateDiff.summary(from: demoState, to: next) == "deleted AIOverlay demo-shadow")
        let imported = try ChangePlanner.apply(.replaceAll(yaml: demoState.yaml), to: next, version: 2)
        #expect(imported == demoState)
        do {
            _ = try ChangePlanner.apply(.replaceAll(yaml: "kind: [unclosed"), to: next, version: 2)
            Issue.record("expected 422")
        } catch { #expect(error.status == 422) }
    }

    @Test func otherChangesListTheirPaths() throws {
        var node = try json(newOverlay)
        let base = try ChangePlanner.apply(.create(.overlay, node), to: demoState, version: 1)
        node = try json(newOverlay.replacingOccurrences(of: "\"weight\": 100}]", with: "\"weight\": 100}], \"strategy\": \"Canary\""))
        let next = try ChangePlanner.apply(.replace(.overlay, name: "crm", node), to: base, version: 2)
        #expect(StateDiff.summary(from: base, to: next) == "AIOverlay crm: spec.strategy added (Canary)")
        #expect(StateDiff.summary(from: next, to: next) == "no change")
    }

    @Test func unifiedDiffShowsChangedLinesWithContext() {
        let diff = StateDiff.unified(from: "a\nb\nc\nd\ne\nf\ng\nh\n", to: "a\nb\nc\nd\nE\nf\ng\nh\n", oldLabel: "v1", newLabel: "v2")
        #expect(diff == "--- v1\n+++ v2\n@@ -2,7 +2,7 @@\n b\n c\n d\n-e\n+E\n f\n g\n h\n")
        #expect(StateDiff.unified(from: "x\n", to: "x\n", oldLabel: "a", newLabel: "b") == "")
    }

    @Test func splitPreviewMovesOnlyTheBucketsBetweenTheBounds() {
        let preview = SplitPreview(
            overlay: "demo-canary", from: [("mock-fast", 80), ("mock-smart", 20)], to: [("mock-fast", 50), ("mock-smart", 50)])
        #expect(preview.moved == 3000)
        #expect(preview.moves == [.init(from: "mock-fast", to: "mock-smart", buckets: 3000, ranges: [5000..<8000])])
    }
}
