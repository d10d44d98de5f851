import OverlayCore
import Yams

/// One change an operator asks for. Every change yields a whole new desired state, validated
/// whole, or an ``APIError`` and nothing written.
public enum StateChange: @unchecked Sendable {
    // @unchecked: Yams' Node is a value type that predates Sendable.
    /// `POST /v1/overlays`, `POST /v1/models`: a new resource (409 when its name exists).
    case create(ResourceKind, Node)
    /// `PUT /v1/{overlays|models}/{name}`: the whole resource (404 when unknown).
    case replace(ResourceKind, name: String, Node)
    /// `DELETE /v1/{overlays|models}/{name}` (404 when unknown).
    case delete(ResourceKind, name: String)
    /// `PUT /v1/overlays/{name}/weights`: every model of the overlay with its new weight.
    case setWeights(overlay: String, weights: [(model: String, weight: Int)])
    /// `POST /v1/import`: the whole state from YAML.
    case replaceAll(yaml: String)
}

/// Applies changes to a desired state: pure, so every rule is unit-tested without a database.
public enum ChangePlanner {
    /// The state after `change`, validated with `overlayd validate`'s loader.
    ///
    /// - Throws: 404 for an unknown name, 409 for a name that exists, 422 with every problem.
    public static func apply(_ change: StateChange, to state: DesiredState, version: Int) throws(APIError) -> DesiredState {
        var next = state
        switch change {
        case .create(let kind, let node):
            let name = try checkedName(node, kind: kind)
            if state.resource(kind, named: name) != nil {
                throw APIError(
                    status: 409, "\(kind.rawValue) \(name) exists; change it with PUT /v1/\(kind.plural)/\(name)",
                    currentVersion: version)
            }
            next.resources.append(Resource(kind: kind, name: name, node: ResourceJSON.block(node)))
        case .replace(let kind, let name, let node):
            guard let index = state.resources.firstIndex(where: { $0.kind == kind && $0.name == name }) else {
                throw .notFound("no \(kind.rawValue) named \"\(name)\"")
            }
            let bodyName = try checkedName(node, kind: kind)
            guard bodyName == name else {
                throw .invalid([
                    APIProblem(
                        path: "\(kind.rawValue) \(name): metadata.name",
                        message: "must be \"\(name)\" (the name in the path; to rename, create the new one and delete the old), got \"\(bodyName)\"")
                ])
            }
            next.resources[index] = Resource(kind: kind, name: name, node: ResourceJSON.block(node))
        case .delete(let kind, let name):
            guard let index = state.resources.firstIndex(where: { $0.kind == kind && $0.name == name }) else {
                throw .notFound("no \(kind.rawValue) named \"\(name)\"")
            }
            next.resources.remove(at: index)
        case .setWeights(let overlay, let weights):
            guard let index = state.resources.firstIndex(where: { $0.kind == .overlay && $0.name == overlay }) else {
                throw .notFound("no AIOverlay named \"\(overlay)\"")
            }
            next.resources[index].node = try withWeights(state.resources[index], weights)
        case .replaceAll(let yaml):
            do {
                next = try DesiredState.parse(yaml: yaml, source: "import")
            } catch {
                throw .invalid(error)
            }
        }
        do {
            _ = try next.validate()
        } catch {
            throw .invalid(error)
        }
        return next
    }

    /// `metadata.name` of a resource body, and its `kind` when given; the validator reports every
    /// other problem of the body.
    public static func checkedName(_ node: Node, kind: ResourceKind) throws(APIError) -> String {
        guard case .mapping(let mapping) = node else {
            throw .invalid([APIProblem(path: "\(kind.rawValue): (body)", message: "must be an object (apiVersion, kind, metadata, spec)")])
        }
        let name = mapping["metadata"]?["name"]?.string
        let label = "\(kind.rawValue) \(name ?? "(no name)")"
        if let given = mapping["kind"], given.string != kind.rawValue {
            throw .invalid([
                APIProblem(
                    path: "\(label): kind",
                    message: "must be \(kind.rawValue) on /v1/\(kind.plural), got \(ResourceJSON.render(given))")
            ])
        }
        guard let name, !name.isEmpty else {
            throw .invalid([APIProblem(path: "\(label): metadata.name", message: "is required (a DNS-1123 name)")])
        }
        return name
    }

    /// The overlay's node with `spec.models[i].weight` set from `weights`, which must name every
    /// model of the overlay once and no other.
    static func withWeights(_ overlay: Resource, _ weights: [(model: String, weight: Int)]) throws(APIError) -> Node {
        let label = "AIOverlay \(overlay.name)"
        guard case .mapping(var root) = overlay.node, case .mapping(var spec)? = root["spec"],
            case .sequence(var models)? = spec["models"]
        else {
            throw .invalid([APIProblem(path: "\(label): spec.models", message: "the stored overlay has no list of models")])
        }
        let names = models.map { $0["name"]?.string ?? "" }
        var problems: [APIProblem] = []
        var seen: Set<String> = []
        for (model, weight) in weights {
            if !names.contains(model) {
                problems.append(APIProblem(
                    path: "weights.\(model)",
                    message: "no model \"\(model)\" in \(label); its models: \(names.joined(separator: ", "))"))
            }
            if !seen.insert(model).inserted {
                problems.append(APIProblem(path: "weights.\(model)", message: "given twice"))
            }
            if !(0...100).contains(weight) {
                problems.append(APIProblem(path: "weights.\(model)", message: "must be 0...100, got \(weight)"))
            }
        }
        let missing = names.filter { !seen.contains($0) }
        if !missing.isEmpty {
            problems.append(APIProblem(
                path: "weights",
                message: "must give every model of \(label); missing: \(missing.joined(separator: ", "))"))
        }
        if !problems.isEmpty { throw .invalid(problems) }
        for index in models.indices {
            guard case .mapping(var item) = models[index], let name = item["name"]?.string,
                let weight = weights.first(where: { $0.model == name })?.weight
            else { continue }
            item["weight"] = Node(String(weight), Tag(.int), .plain)
            models[index] = .mapping(item)
        }
        spec["models"] = .sequence(models)
        root["spec"] = .mapping(spec)
        return .mapping(root)
    }
}
