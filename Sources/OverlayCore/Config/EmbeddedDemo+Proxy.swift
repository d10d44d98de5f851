extension EmbeddedDemo {
    /// The configuration of `overlayd demo`: the built-in legacy app behind the proxy, reached as
    /// `127.0.0.1` (Canary 80/20, JSON enrichment under /api/) or `localhost` (Shadow: mock-fast
    /// serves, mock-smart is compared in the background; see /drift). The browser's Host is what
    /// the proxy matches (it forwards it unchanged), so both names reach the same app.
    public static let proxyDemoSource = "embedded:proxy-demo"
    public static let proxyDemoText = """
        # overlayd demo: the built-in legacy CRM behind the reverse proxy.
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata:
          name: crm-canary
        spec:
          hostApp: "127.0.0.1"
          models:
            - name: "mock-fast"
              weight: 80
            - name: "mock-smart"
              weight: 20
          strategy: "Canary"
          injection:
            json:
              paths: ["/api/"]
        ---
        apiVersion: orchestrator.io/v1
        kind: AIOverlay
        metadata:
          name: crm-shadow
        spec:
          hostApp: "localhost"
          models:
            - name: "mock-fast"
            - name: "mock-smart"
          strategy: "Shadow"
          injection:
            json:
              paths: ["/api/"]
        ---
        apiVersion: orchestrator.io/v1
        kind: AIModel
        metadata:
          name: mock-fast
        spec:
          provider: mock
          mock:
            latency: 20ms
          # High enough that a load test measures the proxy, not the mock's concurrency limit.
          maxConcurrency: 10000
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
          maxConcurrency: 10000

        """

    public static func loadProxyDemo() -> OverlayConfig { compile(proxyDemoText, source: proxyDemoSource) }

    /// The proxy demo with mock models that answer at once (`overlayd demo --instant-models`): a
    /// load test then measures the proxy, the split and the injection, not the mocks' latency.
    public static var instantProxyDemoText: String {
        proxyDemoText.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            line.trimmingPrefix(while: { $0 == " " }).hasPrefix("latency:")
                ? line.prefix(while: { $0 == " " }) + "latency: 0ms"
                : line
        }.joined(separator: "\n")
    }

    public static func loadInstantProxyDemo() -> OverlayConfig { compile(instantProxyDemoText, source: proxyDemoSource) }
}
