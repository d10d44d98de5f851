/// The request-target of an HTTP/1.1 request line, in the forms a reverse proxy must accept
/// (RFC 9112 §3.2): the authority and the path (with any query) it names.
enum RequestTarget: Equatable {
    /// origin-form (`/path?query`), absolute-form (`http://host/path?query`: its authority
    /// replaces the Host field, §3.2.2) or asterisk-form (`*`, for OPTIONS: the path is `*`).
    case resource(authority: String, path: String)
    /// Anything else (authority-form `host:port` is for CONNECT, which a reverse proxy does not
    /// serve); the reason, for the 400.
    case invalid(String)

    init(_ target: String, host: String?) {
        if target.hasPrefix("/") {
            self = .resource(authority: host ?? "", path: target)
            return
        }
        if target == "*" {
            self = .resource(authority: host ?? "", path: "*")
            return
        }
        for scheme in ["http://", "https://"] where target.prefix(scheme.count).lowercased() == scheme {
            let rest = target.dropFirst(scheme.count)
            let end = rest.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? rest.endIndex
            var authority = rest[..<end]
            // Userinfo is deprecated in http(s) URIs (RFC 9110 §4.2.4): only the host and port count.
            if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
            guard !authority.isEmpty else { break }
            var path = String(rest[end...].prefix { $0 != "#" })
            if !path.hasPrefix("/") { path = "/" + path }
            self = .resource(authority: String(authority), path: path)
            return
        }
        self = .invalid("the request target must be a path (/…), an http(s) URL or *; got \"\(target.prefix(200))\"")
    }
}
