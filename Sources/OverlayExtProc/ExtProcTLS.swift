#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOSSL

/// TLS for the ext_proc listener (`--tls-cert`, `--tls-key`, `--tls-client-ca`): for a shared
/// ext_proc service reached over the network rather than a sidecar on localhost. ALPN offers `h2`;
/// with a client CA, every client must present a certificate it signed (mTLS).
public enum ExtProcTLS {
    /// A TLS setting that cannot be used: names the option, the file and what is wrong with it.
    public struct SetupError: Error, CustomStringConvertible {
        public let description: String
    }

    /// The server context for the given files (PEM). `clientCA` turns on client verification.
    public static func context(certificate: String, key: String, clientCA: String?) throws(SetupError) -> NIOSSLContext {
        let chain = try load("--tls-cert", certificate, "a PEM certificate chain") { try NIOSSLCertificate.fromPEMFile($0) }
        guard !chain.isEmpty else {
            throw SetupError(description: "--tls-cert \(certificate): no PEM certificate in the file")
        }
        let privateKey = try load("--tls-key", key, "a PEM private key") { try NIOSSLPrivateKey(file: $0, format: .pem) }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        configuration.applicationProtocols = ["h2"]
        if let clientCA {
            let roots = try load("--tls-client-ca", clientCA, "a PEM certificate bundle") { try NIOSSLCertificate.fromPEMFile($0) }
            guard !roots.isEmpty else {
                throw SetupError(description: "--tls-client-ca \(clientCA): no PEM certificate in the file")
            }
            configuration.trustRoots = .certificates(roots)
            // A client certificate is required and must chain to one of these roots; clients are
            // not named by host, so no hostname check.
            configuration.certificateVerification = .noHostnameVerification
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw SetupError(description: "--tls-cert \(certificate) with --tls-key \(key): \(error) (does the key belong to the certificate?)")
        }
    }

    /// Reads `path` (given as `option`) with `parse`; a failure names the option, the file and what
    /// it should have held.
    private static func load<T>(_ option: String, _ path: String, _ what: String, _ parse: (String) throws -> T) throws(SetupError) -> T {
        let path = try readable(path, option: option)
        do {
            return try parse(path)
        } catch {
            throw SetupError(description: "\(option) \(path): not \(what) (\(error))")
        }
    }

    private static func readable(_ path: String, option: String) throws(SetupError) -> String {
        guard let file = fopen(path, "r") else {
            throw SetupError(description: "\(option) \(path): cannot read the file (\(String(cString: strerror(errno))))")
        }
        fclose(file)
        return path
    }
}
