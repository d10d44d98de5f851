/// The configuration `overlayd serve` uses without `--config`: documented in the README.
///
/// Overlays the hosts `localhost` (Canary 80/20) and `demo.overlayd.local` (Shadow) with the
/// built-in mock models, so a newcomer can drive it with no file at all. Other hosts pass through.
public enum EmbeddedDemo {
    public static let source = "embedded:demo"
    public static let text = """
        # overlayd's embedded demo configuration (used when --config is not given).
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata:
          name: demo-canary
        spec:
          hostApp: "localhost"
          models:
            - name: "mock-fast"
              weight: 80
            - name: "mock-smart"
              weight: 20
          strategy: "Canary"
        ---
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata:
          name: demo-shadow
        spec:
          hostApp: "demo.overlayd.local"
          models:
            - name: "mock-fast"
            - name: "mock-smart"
          strategy: "Shadow"
        ---
        apiVersion: orchestrator.io/v1
        kind: AIModel
        metadata:
          name: mock-fast
        spec:
          provider: mock
          mock:
            latency: 20ms
          fallback: mock-smart
        ---
        apiVersion: orchestrator.io/v1
        kind: AIModel
        metadata:
          name: mock-smart
        spec:
          provider: mock
          mock:
            latency: 120ms

        """

    public static func load() -> OverlayConfig { compile(text, source: source) }

    /// An embedded document: a constant that tests load, so a failure is a programming error.
    static func compile(_ text: String, source: String) -> OverlayConfig {
        do {
            return try ConfigLoader.load(text: text, source: source)
        } catch {
            preconditionFailure("the embedded configuration \(source) is invalid: \(error)")
        }
    }
}
