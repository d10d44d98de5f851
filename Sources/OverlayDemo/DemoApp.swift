import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OverlayRuntime

/// The built-in "legacy CRM" of `overlayd demo`: a few server-rendered pages with a dated look,
/// one of them served gzip-encoded (decoded, injected and re-encoded by the proxy), and a JSON endpoint.
/// Deterministic and allocation-light, so the demo is also a cheap load-test target.
public enum DemoApp {
    static let accounts: [(id: Int, name: String, owner: String, stage: String, value: Int)] = [
        (1001, "Acme Tooling GmbH", "M. Keller", "Negotiation", 48_000),
        (1002, "Borealis Freight", "J. Ortega", "Qualified", 12_500),
        (1003, "Cedar Health Partners", "A. Nguyen", "Closed Won", 97_200),
        (1004, "Dunmore Paper Co.", "M. Keller", "Prospect", 5_000),
        (1005, "Elm Street Bakery", "S. Patel", "Closed Lost", 2_300),
    ]

    static func page(title: String, body: String) -> String {
        """
        <!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN">
        <html>
        <head>
        <meta http-equiv="Content-Type" content="text/html; charset=utf-8">
        <title>\(title) - LegacyCRM 2003</title>
        <style type="text/css">
        body { font-family: Verdana, Tahoma, sans-serif; font-size: 12px; background: #d4d0c8; margin: 0; }
        #top { background: #000080; color: #fff; padding: 6px 10px; font-weight: bold; }
        #nav { background: #ece9d8; border-bottom: 2px outset #fff; padding: 4px 10px; }
        #nav a { color: #000080; margin-right: 14px; }
        #main { padding: 10px; }
        table.grid { border-collapse: collapse; background: #fff; }
        table.grid td, table.grid th { border: 1px solid #808080; padding: 3px 8px; }
        table.grid th { background: #c0c0c0; text-align: left; }
        .foot { color: #404040; font-size: 10px; padding: 10px; }
        </style>
        </head>
        <body>
        <div id="top">LegacyCRM Enterprise Edition v4.2</div>
        <div id="nav"><a href="/">Home</a><a href="/accounts">Accounts</a><a href="/reports">Reports (gzip)</a><a href="/api/accounts">API</a></div>
        <div id="main">
        <h2>\(title)</h2>
        \(body)
        </div>
        <div class="foot">Best viewed in Internet Explorer 6 at 800x600. &copy; 2003 LegacyCRM Inc.</div>
        </body>
        </html>

        """
    }

    static let home = Array(page(
        title: "Welcome back",
        body: "<p>You have <b>3</b> open tasks and <b>1</b> overdue follow-up.</p><p>Use the menu above to browse accounts or run a report.</p>"
    ).utf8)

    static let accountsPage: [UInt8] = {
        var rows = "<table class=\"grid\"><tr><th>ID</th><th>Account</th><th>Owner</th><th>Stage</th><th>Value (USD)</th></tr>"
        for account in accounts {
            rows += "<tr><td>\(account.id)</td><td>\(account.name)</td><td>\(account.owner)</td><td>\(account.stage)</td><td align=\"right\">\(account.value)</td></tr>"
        }
        rows += "</table>"
        return Array(page(title: "Accounts", body: rows).utf8)
    }()

    static let reportsGzip: [UInt8] = {
        let total = accounts.reduce(0) { $0 + $1.value }
        let body = "<p>Pipeline total: <b>\(total) USD</b> across \(accounts.count) accounts.</p><p><i>This page is served gzip-encoded: overlayd decodes it, injects the panel and encodes it again.</i></p>"
        // compress-nio, the codec overlayd itself decodes and re-encodes such pages with.
        return CompressCodec().encode(Array(page(title: "Quarterly report", body: body).utf8), encoding: "gzip")!
    }()

    static let accountsJSON: [UInt8] = {
        let items = accounts.map {
            "{\"id\":\($0.id),\"name\":\"\($0.name)\",\"owner\":\"\($0.owner)\",\"stage\":\"\($0.stage)\",\"value\":\($0.value)}"
        }
        return Array("{\"accounts\":[\(items.joined(separator: ","))]}".utf8)
    }()

    /// The app on `host:port` (port 0 picks a free one; `onRunning` gets the bound port).
    public static func application(
        host: String = "127.0.0.1", port: Int = 0, logger: Logger, onRunning: @escaping @Sendable (Int) async -> Void
    ) -> some ApplicationProtocol {
        let router = Router()
        let html: HTTPFields = [.contentType: "text/html; charset=utf-8", .cacheControl: "no-cache"]
        var gzipped = html
        gzipped[.contentEncoding] = "gzip"
        gzipped[.vary] = "Accept-Encoding"
        let resources: [(path: String, headers: HTTPFields, body: [UInt8])] = [
            ("/", html, home),
            ("/accounts", html, accountsPage),
            ("/reports", gzipped, reportsGzip),
            ("/api/accounts", [.contentType: "application/json"], accountsJSON),
        ]
        for resource in resources {
            // Built once: every answer shares the same storage.
            let buffer = ByteBuffer(bytes: resource.body)
            let headers = resource.headers
            router.get(RouterPath(resource.path)) { _, _ in Response(status: .ok, headers: headers, body: .init(byteBuffer: buffer)) }
            router.head(RouterPath(resource.path)) { _, _ in
                var head = headers
                head[.contentLength] = String(buffer.readableBytes)
                return Response(status: .ok, headers: head)
            }
        }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "LegacyCRM/4.2 (IIS-compatible)"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
            logger: logger)
    }
}
