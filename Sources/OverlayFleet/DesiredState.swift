import OverlayCore
import Yams

/// The kinds of resource the store holds.
public enum ResourceKind: String, Sendable, CaseIterable {
    case overlay = "AIOverlay"
    case model = "AIModel"

    /// The word the API's paths use (`/v1/overlays`, `/v1/models`).
    public var plural: String { self == .overlay ? "overlays" : "models" }
}

/// One resource of the desired state: its kind, `metadata.name` and the whole node.
public struct Resource: @unchecked Sendable, Equatable {
    // @unchecked: Yams' Node is a value type (enums and structs of strings) that predates Sendable.
    public var kind: ResourceKind
    public var name: String
    public var node: Node

    public init(kind: ResourceKind, name: String, node: Node) {
        self.kind = kind
        self.name = name
        self.node = node
    }

    /// As JSON (the CRD shape).
    public var json: String { ResourceJSON.render(node) }
}

/// The whole desired state of the fleet: AIOverlay and AIModel resources, in order.
///
/// Its YAML (``yaml``) is what a version stores and what `/v1/desired-state` serves: one document
/// per resource, separated by `---`, exactly what the sidecars' poller and `overlayd validate` read.
public struct DesiredState: Sendable, Equatable {
    public var resources: [Resource]

    public init(resources: [Resource] = []) {
        self.resources = resources
    }

    public var overlays: [Resource] { resources.filter { $0.kind == .overlay } }
    public var models: [Resource] { resources.filter { $0.kind == .model } }

    public func resource(_ kind: ResourceKind, named name: String) -> Resource? {
        resources.first { $0.kind == kind && $0.name == name }
    }

    /// The YAML text: one document per resource, or an empty text for an empty state.
    public var yaml: String {
        resources.map { resource in
            (try? Yams.serialize(node: ResourceJSON.block(resource.node))) ?? ""
        }.map { "---\n" + $0 }.joined()
    }

    /// Validates the state with `overlayd validate`'s loader (every problem at once).
    public func validate(source: String = "control-plane") throws(ConfigError) -> OverlayConfig {
        try ConfigLoader.load(text: yaml, source: source)
    }

    /// Reads a document (one or more YAML documents, a list, or a Kubernetes `...List`), validated
    /// first with the same loader as `overlayd validate`; any problem rejects it whole.
    public static func parse(yaml text: String, source: String) throws(ConfigError) -> DesiredState {
        _ = try ConfigLoader.load(text: text, source: source)
        var nodes: [Node] = []
        do {
            var documents = try Yams.compose_all(yaml: text)
            while let document = documents.next() {
                switch document {
                case .sequence(let items): nodes.append(contentsOf: items)
                case .mapping(let mapping):
                    if let kind = mapping["kind"]?.string, kind.hasSuffix("List"), case .sequence(let items)? = mapping["items"] {
                        nodes.append(contentsOf: items)
                    } else {
                        nodes.append(document)
                    }
                default: continue
                }
            }
        } catch {
            throw ConfigError(source: source, problems: [.init(resource: nil, path: "", message: "not valid YAML: \(error)")])
        }
        var state = DesiredState()
        for node in nodes {
            // The loader accepted the document, so every node is a resource of a known kind with a name.
            guard let kindText = node["kind"]?.string, let kind = ResourceKind(rawValue: kindText),
                let name = node["metadata"]?["name"]?.string
            else { continue }
            state.resources.append(Resource(kind: kind, name: name, node: ResourceJSON.block(node)))
        }
        return state
    }
}
