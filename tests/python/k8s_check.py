"""Offline checks of Kubernetes manifests, and an emulation of the API server for our CRDs.

There is no cluster (and no kubectl) on our machines. What is checked instead:

* Built-in kinds (Deployment, Service, ConfigMap, ServiceAccount, Role, RoleBinding,
  CustomResourceDefinition): the JSON schemas that ``kubernetes-validate`` ships (generated from
  Kubernetes' own OpenAPI document, one set per release), in their *strict* variant, where every
  object has ``additionalProperties: false``: a misspelt or misplaced field, a wrong type or a
  missing required field is an error. Checked against the oldest and newest Kubernetes releases
  we support (:data:`KUBERNETES_VERSIONS`).
* ServiceMonitor (monitoring.coreos.com/v1, not built in, and no offline schema package exists):
  :data:`SERVICEMONITOR_SCHEMA`, a strict JSON schema of the part of the prometheus-operator API
  we use, written from its API reference.
* ScaledObject (keda.sh/v1alpha1, KEDA; not in kubernetes-validate either):
  :func:`keda_check.scaledobject_problems`, a strict JSON schema written from KEDA's reference.
* Our CRDs: :func:`crd_problems` - the CRD object itself (names, versions, printer columns) and
  the rules that make an ``openAPIV3Schema`` *structural* (every node typed, no ``$ref`` /
  ``uniqueItems`` / ``patternProperties``…, ``metadata`` unrestricted, defaults valid), and that
  every CEL rule compiles and its ``fieldPath`` exists.
* Custom resources: :class:`CrdValidator` does, for a create request, what the API server does
  with a CRD's schema: ``metadata.name`` must be a DNS-1123 subdomain; nulls of non-nullable
  fields are pruned and ``default`` values applied; the document is validated against the
  ``openAPIV3Schema`` with ``jsonschema`` (``pattern`` with RE2 like Go's regexp; objects
  without ``x-kubernetes-preserve-unknown-fields`` get ``additionalProperties: false``, which is
  what ``kubectl apply --validate=strict`` does with fields the schema would prune); and every
  ``x-kubernetes-validations`` rule is evaluated with ``celpy`` (the cel-python package).
  Kubernetes' CEL environment adds libraries to standard CEL; the one function of theirs our
  rules use, ``<list>.sum()``, is supplied in Python (:func:`_k8s_sum`). Unlike the API server,
  celpy does not type-check rules at CRD creation, nor estimate their cost: the CRDs bound the
  lists and strings that rules iterate (``maxItems`` / ``maxLength``) for that reason.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import celpy
import jsonschema
import kubernetes_validate
import re2
import yaml
from celpy import celtypes

import keda_check

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy" / "kubernetes"
CRD_DIR = DEPLOY_DIR / "crds"

# Oldest release we support (x-kubernetes-validations with fieldPath: GA in 1.29/1.30) and the
# newest one kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ManifestError(Exception):
    """A manifest that the API server (or kubectl) would reject; the message lists every problem."""


def load_documents(path: Path) -> list[Any]:
    """Every non-empty YAML document of ``path`` (``---`` separated)."""
    with open(path, "rb") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def manifest_files(root: Path = DEPLOY_DIR) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".yaml", ".yml"))


def fmt_path(parts: Iterable[Any]) -> str:
    """``["spec", "models", 1, "weight"]`` -> ``spec.models[1].weight`` (overlayd's notation)."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


# --------------------------------------------------------------------------- built-in kinds


class _SchemaNotFound(Exception):
    pass


def builtin_problems(doc: dict, versions: Iterable[str] = KUBERNETES_VERSIONS) -> list[str]:
    """Errors of a built-in kind against kubernetes-validate's strict schemas, per release."""
    problems = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"Kubernetes {version}: {fmt_path(exc.path) or '<root>'}: {exc.message}")
        except kubernetes_validate.utils.SchemaNotFoundError as exc:
            raise _SchemaNotFound(exc.message) from None
    return problems


def has_builtin_schema(doc: dict) -> bool:
    try:
        builtin_problems(doc, versions=KUBERNETES_VERSIONS[-1:])
    except _SchemaNotFound:
        return False
    return True


_DURATION = r"^(0|(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

# monitoring.coreos.com/v1 ServiceMonitor: the fields we use (and a few neighbours), strict.
SERVICEMONITOR_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "additionalProperties": False,
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "targetPort": {"type": ["string", "integer"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def servicemonitor_problems(doc: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SERVICEMONITOR_SCHEMA)
    return [f"{fmt_path(e.absolute_path) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def check_manifest(doc: dict) -> None:
    """Raise :class:`ManifestError` if ``doc`` (any kind we ship) is invalid."""
    if doc.get("kind") == "ServiceMonitor":
        problems = servicemonitor_problems(doc)
    elif doc.get("kind") == "ScaledObject":
        problems = keda_check.scaledobject_problems(doc)
    else:
        try:
            problems = builtin_problems(doc)
        except _SchemaNotFound as exc:
            raise ManifestError(f"no schema for {doc.get('apiVersion')} {doc.get('kind')}: {exc}") from None
        if doc.get("kind") == "CustomResourceDefinition":
            problems += crd_problems(doc)
    if problems:
        raise ManifestError(f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------- CEL


def _k8s_sum(items: celtypes.ListType) -> Any:
    """Kubernetes' list library ``sum()`` (k8s.io/apiserver/pkg/cel/library/lists.go) for ints."""
    total = 0
    for item in items:
        if not isinstance(item, celtypes.IntType) or isinstance(item, celtypes.BoolType):
            raise TypeError(f"sum() of a non-int list item {item!r}")
        total += int(item)
    return celtypes.IntType(total)


K8S_CEL_FUNCTIONS = {"sum": _k8s_sum}
_CEL_ENV = celpy.Environment()
_CEL_CACHE: dict[str, Any] = {}


def compile_rule(rule: str):
    """A celpy program for ``rule``; raises on a syntax error."""
    if rule not in _CEL_CACHE:
        _CEL_CACHE[rule] = _CEL_ENV.program(_CEL_ENV.compile(rule), functions=K8S_CEL_FUNCTIONS)
    return _CEL_CACHE[rule]


def eval_rule(rule: str, value: Any) -> tuple[bool, str | None]:
    """(passed, error) of one rule with ``self`` = value; an evaluation error fails the rule."""
    try:
        result = compile_rule(rule).evaluate({"self": celpy.json_to_cel(value)})
    except Exception as exc:  # celpy raises CELEvalError and Python errors alike
        return False, f"evaluation error: {exc}"
    if isinstance(result, celtypes.BoolType):
        return bool(result), None
    return False, f"evaluation error: {result!r}"


# --------------------------------------------------------------------------- structural schemas

_ALLOWED_KEYS = {
    "type", "description", "title", "properties", "required", "items", "additionalProperties",
    "enum", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
    "multipleOf", "default", "nullable", "example", "externalDocs",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource", "x-kubernetes-validations", "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys", "x-kubernetes-map-type",
}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}
_RULE_KEYS = {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}


def _schema_at(schema: dict, field_path: str) -> dict | None:
    """The schema node a CEL ``fieldPath`` (``.spec.models``) points to, or None."""
    node = schema
    for part in [p for p in field_path.split(".") if p]:
        if node.get("type") != "object" or part not in node.get("properties", {}):
            return None
        node = node["properties"][part]
    return node


def structural_problems(schema: dict) -> list[str]:
    """Why ``schema`` is not a structural schema (empty when it is), plus rule/default checks."""
    problems: list[str] = []

    def visit(node: Any, path: str, root: bool = False, unknown_ok: bool = False) -> None:
        where = path or "<root>"
        if not isinstance(node, dict):
            problems.append(f"{where}: a schema must be a mapping")
            return
        for key in node:
            if key not in _ALLOWED_KEYS:
                problems.append(f"{where}: {key!r} is not allowed in a structural schema")
        for key in ("allOf", "anyOf", "oneOf", "not"):
            if key in node:
                problems.append(f"{where}: {key} is not supported by this checker")
        if node.get("uniqueItems") is True:
            problems.append(f"{where}: uniqueItems: true is forbidden")
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        if preserve is not None and preserve is not True:
            problems.append(f"{where}: x-kubernetes-preserve-unknown-fields must be true if set")
        kind = node.get("type")
        if kind is None:
            if not (preserve or node.get("x-kubernetes-int-or-string") or unknown_ok):
                problems.append(f"{where}: type is required")
        elif kind not in _TYPES:
            problems.append(f"{where}: unknown type {kind!r}")
        if root and kind != "object":
            problems.append("<root>: the root must be type object")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
        if ("properties" in node or "additionalProperties" in node) and kind != "object":
            problems.append(f"{where}: properties on a non-object")
        if kind == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{where}: an array needs items (one schema)")
        if "items" in node and kind != "array":
            problems.append(f"{where}: items on a non-array")
        for name in node.get("required", []):
            if name not in node.get("properties", {}):
                problems.append(f"{where}: required {name!r} is not a property")
        if "enum" in node:
            for value in node["enum"]:
                errs = list(jsonschema.Draft202012Validator({"type": kind}).iter_errors(value)) if kind else []
                if errs:
                    problems.append(f"{where}: enum value {value!r} is not of type {kind}")
        for rule in node.get("x-kubernetes-validations", []):
            extra = set(rule) - _RULE_KEYS
            if extra or "rule" not in rule:
                problems.append(f"{where}: bad x-kubernetes-validations entry {rule!r}")
                continue
            try:
                compile_rule(rule["rule"])
            except Exception as exc:
                problems.append(f"{where}: CEL rule {rule['rule']!r} does not compile: {exc}")
            if "fieldPath" in rule and _schema_at(node, rule["fieldPath"]) is None:
                problems.append(f"{where}: fieldPath {rule['fieldPath']!r} is not a field of this schema")
        if "default" in node:
            if root:
                problems.append("<root>: default is not allowed at the root")
            else:
                errs = CrdValidator.value_problems(node["default"], node, path)
                problems.extend(f"{where}: default {node['default']!r} is invalid: {e}" for e in errs)
        for name, sub in node.get("properties", {}).items():
            sub_path = f"{path}.{name}" if path else name
            if root and name == "metadata":
                if sub != {"type": "object"}:
                    problems.append("metadata: at the root only {type: object} is allowed")
                continue
            if root and name in ("apiVersion", "kind") and isinstance(sub, dict) and sub.get("type") != "string":
                problems.append(f"{name}: must be type string")
            visit(sub, sub_path, unknown_ok=unknown_ok or bool(preserve))
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"], f"{path}.*", unknown_ok=unknown_ok)
        if isinstance(node.get("items"), dict):
            visit(node["items"], f"{path}[*]", unknown_ok=unknown_ok)

    visit(schema, "", root=True)
    return problems


def _printer_column_type(schema: dict, json_path: str) -> str | None:
    if json_path == ".metadata.creationTimestamp":
        return "date"
    node = _schema_at(schema, json_path)
    return None if node is None else node.get("type")


def crd_problems(crd: dict) -> list[str]:
    """The CRD object's own consistency, and every version's schema (see module doc)."""
    problems = []
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    if crd.get("metadata", {}).get("name") != f"{names.get('plural')}.{group}":
        problems.append(f"metadata.name must be <plural>.<group> = {names.get('plural')}.{group}")
    if names.get("listKind", names.get("kind", "") + "List") != names.get("kind", "") + "List":
        problems.append("names.listKind must be <kind>List")
    for key in ("plural", "singular"):
        if names.get(key) != names.get(key, "").lower():
            problems.append(f"names.{key} must be lower case")
    versions = spec.get("versions", [])
    if sum(1 for v in versions if v.get("storage")) != 1:
        problems.append("exactly one version must be the storage version")
    for version in versions:
        schema = version.get("schema", {}).get("openAPIV3Schema")
        label = f"versions[{version.get('name')}]"
        if not isinstance(schema, dict):
            problems.append(f"{label}: openAPIV3Schema is required")
            continue
        problems += [f"{label}: {p}" for p in structural_problems(schema)]
        for column in version.get("additionalPrinterColumns", []):
            found = _printer_column_type(schema, column.get("jsonPath", ""))
            if found is None:
                problems.append(f"{label}: printer column {column.get('name')!r}: jsonPath "
                                f"{column.get('jsonPath')!r} is not a field of the schema")
            elif found != column.get("type"):
                problems.append(f"{label}: printer column {column.get('name')!r} has type "
                                f"{column.get('type')!r} but the field is {found!r}")
    return problems


# --------------------------------------------------------------------------- custom resources


def _re2_pattern(validator, pattern, instance, schema):
    if isinstance(instance, str) and re2.search(pattern, instance) is None:
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _re2_pattern})


def to_jsonschema(node: dict, root: bool = True) -> dict:
    """An openAPIV3Schema node as JSON Schema, with strict field validation (see module doc)."""
    out: dict = {}
    for key, value in node.items():
        if key == "properties":
            out["properties"] = {
                name: ({"type": "object"} if root and name == "metadata" else to_jsonschema(sub, root=False))
                for name, sub in value.items()
            }
        elif key == "items":
            out["items"] = to_jsonschema(value, root=False)
        elif key == "additionalProperties" and isinstance(value, dict):
            out["additionalProperties"] = to_jsonschema(value, root=False)
        elif key in ("type", "nullable"):
            continue
        elif key.startswith("x-kubernetes-") or key in ("description", "default", "example"):
            continue
        else:
            out[key] = value
    if "type" in node:
        out["type"] = [node["type"], "null"] if node.get("nullable") else node["type"]
    if node.get("type") == "object" and "additionalProperties" not in node \
            and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def _prune_nulls_and_default(value: Any, schema: dict) -> Any:
    """The API server's decoding: nulls of non-nullable fields pruned, then defaults applied."""
    if isinstance(value, dict) and schema.get("type") == "object":
        props = schema.get("properties", {})
        for name in list(value):
            if value[name] is None and name in props and not props[name].get("nullable"):
                del value[name]
        for name, sub in props.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
        for name, sub in props.items():
            if name in value:
                value[name] = _prune_nulls_and_default(value[name], sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune_nulls_and_default(item, schema["items"]) for item in value]
    return value


def _rule_self(value: Any, root: bool) -> Any:
    if root and isinstance(value, dict) and isinstance(value.get("metadata"), dict):
        value = dict(value)
        value["metadata"] = {k: v for k, v in value["metadata"].items() if k in ("name", "generateName")}
    return value


def _cel_problems(value: Any, schema: dict, path: list, problems: list[str], root: bool = False) -> None:
    for rule in schema.get("x-kubernetes-validations", []):
        passed, error = eval_rule(rule["rule"], _rule_self(value, root))
        if not passed:
            where = fmt_path(path + [p for p in rule.get("fieldPath", "").split(".") if p]) or "<root>"
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            if error:  # the first line, shortened: celpy's errors nest the whole expression
                message += f" ({error.splitlines()[0][:160]})"
            problems.append(f"{where}: {message}")
    if isinstance(value, dict) and schema.get("type") == "object":
        for name, sub in schema.get("properties", {}).items():
            if name in value and not (root and name == "metadata"):
                _cel_problems(value[name], sub, path + [name], problems)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _cel_problems(item, schema["items"], path + [index], problems)


def _schema_problems(value: Any, schema: dict, prefix: list) -> list[str]:
    problems = []
    for err in _StrictValidator(to_jsonschema(schema, root=not prefix)).iter_errors(value):
        path = prefix + list(err.absolute_path)
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            known = set(err.schema.get("properties", {}))
            for name in sorted(set(err.instance) - known):
                problems.append(f"{fmt_path(path + [name])}: unknown field")
        elif err.validator == "required" and isinstance(err.instance, dict):
            for name in err.validator_value:
                if name not in err.instance:
                    problems.append(f"{fmt_path(path + [name])}: Required value")
        elif err.validator == "maxItems":
            problems.append(f"{fmt_path(path)}: must have at most {err.validator_value} items, has {len(err.instance)}")
        elif err.validator == "maxLength":
            problems.append(f"{fmt_path(path)}: must be at most {err.validator_value} characters, has {len(err.instance)}")
        else:
            problems.append(f"{fmt_path(path) or '<root>'}: {err.message}")
    return problems


@dataclass
class CrdValidator:
    """The API server's validation of custom resources of the given CRDs (see module doc)."""

    crds: list[dict]

    @classmethod
    def from_dir(cls, directory: Path = CRD_DIR) -> "CrdValidator":
        return cls([doc for path in sorted(directory.glob("*.yaml")) for doc in load_documents(path)])

    def schema_for(self, api_version: Any, kind: Any) -> dict | None:
        for crd in self.crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                if version.get("served") and api_version == f"{spec['group']}/{version['name']}" \
                        and kind == spec["names"]["kind"]:
                    return version["schema"]["openAPIV3Schema"]
        return None

    @staticmethod
    def value_problems(value: Any, schema: dict, path: str = "") -> list[str]:
        """Schema + CEL errors of a value at a node (used for ``default`` values)."""
        prefix = [path] if path else []
        problems = _schema_problems(value, schema, prefix)
        _cel_problems(value, schema, prefix, problems)
        return problems

    def problems(self, doc: Any) -> list[str]:
        """Every reason the API server would reject creating ``doc`` (empty: accepted)."""
        if not isinstance(doc, dict):
            return ["<root>: an object is required"]
        schema = self.schema_for(doc.get("apiVersion"), doc.get("kind"))
        if schema is None:
            served = {f"{c['spec']['group']}/{v['name']}" for c in self.crds for v in c["spec"]["versions"]}
            field = "kind" if doc.get("apiVersion") in served else "apiVersion"
            return [f"{field}: the server does not serve kind {doc.get('kind')!r} in "
                    f"{doc.get('apiVersion')!r} (no such CRD)"]
        problems = []
        metadata = doc.get("metadata")
        if not isinstance(metadata, dict):
            problems.append("metadata: Required value")
        else:
            name = metadata.get("name")
            if not isinstance(name, str) or not name:
                problems.append("metadata.name: Required value")
            elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
                problems.append(f"metadata.name: Invalid value {name!r}: a lowercase RFC 1123 subdomain "
                                "must consist of lower case alphanumeric characters, '-' or '.'")
        if problems:
            return problems
        value = _prune_nulls_and_default(copy.deepcopy(doc), schema)
        problems += _schema_problems(value, schema, [])
        _cel_problems(value, schema, [], problems, root=True)
        return problems

    def defaulted(self, doc: dict) -> dict:
        """``doc`` as the API server would store it (nulls pruned, defaults applied)."""
        return _prune_nulls_and_default(copy.deepcopy(doc), self.schema_for(doc["apiVersion"], doc["kind"]))


def iter_nodes(schema: dict, path: str = "") -> Iterator[tuple[str, dict]]:
    """(path, node) for every node of an openAPIV3Schema."""
    yield path or "<root>", schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from iter_nodes(schema["items"], f"{path}[*]")


# --------------------------------------------------------------------------- the pod as a whole

OVERLAYD_SECURITY_CONTEXT = {
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
READ_VERBS = {"get", "list", "watch"}


def _arg(args: list[str], flag: str) -> str | None:
    """The value of ``--flag value`` or ``--flag=value`` in a container's args."""
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _port_number(container: dict, port: Any) -> int | None:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return declared.get("containerPort")
    return None


def _one(docs: list[dict], kind: str, problems: list[str]) -> dict:
    found = [d for d in docs if d.get("kind") == kind]
    if len(found) != 1:
        problems.append(f"expected exactly one {kind}, found {len(found)}")
        return {}
    return found[0]


def _bootstrap_facts(text: str) -> dict:
    """Listener port, overlayd pipe path and app port of an Envoy bootstrap (sidecar.yaml)."""
    boot = yaml.safe_load(text)
    facts: dict = {"listener_ports": [l["address"]["socket_address"]["port_value"]
                                      for l in boot["static_resources"]["listeners"]],
                   "admin_port": boot.get("admin", {}).get("address", {}).get("socket_address", {}).get("port_value")}
    for cluster in boot["static_resources"]["clusters"]:
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        facts[f"cluster:{cluster['name']}"] = address
    return facts


def deployment_problems(docs: list[dict]) -> list[str]:
    """Cross-references between the manifests that no schema sees (see the checks below)."""
    problems: list[str] = []
    deployment = _one(docs, "Deployment", problems)
    service = _one(docs, "Service", problems)
    monitor = _one(docs, "ServiceMonitor", problems)
    account = _one(docs, "ServiceAccount", problems)
    role = _one(docs, "Role", problems)
    binding = _one(docs, "RoleBinding", problems)
    configmaps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    if problems:
        return problems

    pod = deployment["spec"]["template"]
    pod_spec = pod["spec"]
    pod_labels = pod["metadata"].get("labels", {})
    containers = {c["name"]: c for c in pod_spec["containers"]}
    volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}

    # Deployment selector, Service selector, ServiceMonitor selector.
    selector = deployment["spec"]["selector"].get("matchLabels", {})
    if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
        problems.append(f"Deployment selector {selector} does not match the pod labels {pod_labels}")
    svc_selector = service["spec"].get("selector", {})
    if not svc_selector or any(pod_labels.get(k) != v for k, v in svc_selector.items()):
        problems.append(f"Service selector {svc_selector} does not match the pod labels {pod_labels}")
    all_ports = {p.get("name"): (c["name"], p["containerPort"]) for c in containers.values() for p in c.get("ports", [])}
    svc_ports = {p["name"]: p for p in service["spec"]["ports"]}
    for name, port in svc_ports.items():
        target = port.get("targetPort", port["port"])
        if isinstance(target, str) and target not in all_ports:
            problems.append(f"Service port {name}: targetPort {target!r} is no container port name")
    mon_labels = monitor["spec"]["selector"].get("matchLabels", {})
    if not mon_labels or any(service["metadata"].get("labels", {}).get(k) != v for k, v in mon_labels.items()):
        problems.append(f"ServiceMonitor selector {mon_labels} does not select the Service")
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint.get("port") not in svc_ports:
            problems.append(f"ServiceMonitor endpoint port {endpoint.get('port')!r} is no Service port name")
        if endpoint.get("path", "/metrics") != "/metrics":
            problems.append(f"ServiceMonitor scrapes {endpoint.get('path')!r}, overlayd serves /metrics")
    if "http-metrics" not in svc_ports:
        problems.append("Service has no port named http-metrics")

    # RBAC: the pod's identity may read (only read) both resources.
    if pod_spec.get("serviceAccountName") != account["metadata"]["name"]:
        problems.append(f"pod serviceAccountName {pod_spec.get('serviceAccountName')!r} is not the "
                        f"ServiceAccount {account['metadata']['name']!r}")
    if binding["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}:
        problems.append(f"RoleBinding roleRef {binding['roleRef']} does not name the Role")
    if not any(s.get("kind") == "ServiceAccount" and s.get("name") == account["metadata"]["name"]
               for s in binding.get("subjects", [])):
        problems.append("RoleBinding does not bind the ServiceAccount")
    granted = {(g, r, v) for rule in role["rules"] for g in rule.get("apiGroups", [])
               for r in rule.get("resources", []) for v in rule.get("verbs", [])}
    wanted = {("orchestrator.io", r, v) for r in ("aioverlays", "aimodels") for v in READ_VERBS}
    if missing := wanted - granted:
        problems.append(f"Role lacks {sorted(missing)}")
    if extra := granted - wanted:
        problems.append(f"Role grants more than reading AIOverlays/AIModels: {sorted(extra)}")

    # overlayd: arguments, probes, socket, security.
    overlayd = containers.get("overlayd")
    envoy = containers.get("envoy")
    if overlayd is None or envoy is None:
        return problems + ["the pod needs containers named overlayd and envoy"]
    args = overlayd.get("args", [])
    if args[:1] != ["serve"]:
        problems.append(f"overlayd args must start with serve, got {args[:1]}")
    listen = _arg(args, "--listen") or ""
    socket_path = listen[len("unix:"):] if listen.startswith("unix:") else None
    if socket_path is None:
        problems.append(f"overlayd --listen {listen!r} is not a unix: socket")
    admin = _arg(args, "--admin") or ""
    admin_port = int(admin.rsplit(":", 1)[1]) if ":" in admin and admin.rsplit(":", 1)[1].isdigit() else None
    if not admin.startswith("0.0.0.0:"):
        problems.append(f"overlayd --admin {admin!r} must listen on 0.0.0.0 for the kubelet and Prometheus")
    if all_ports.get("http-metrics") != ("overlayd", admin_port):
        problems.append(f"container port http-metrics {all_ports.get('http-metrics')} is not overlayd's --admin port {admin_port}")
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = overlayd.get(probe_name, {}).get("httpGet", {})
        if get.get("path") != path or _port_number(overlayd, get.get("port")) != admin_port:
            problems.append(f"overlayd {probe_name} must be httpGet {path} on the admin port {admin_port}, got {get}")
    drain = _arg(args, "--drain-timeout")
    grace = pod_spec.get("terminationGracePeriodSeconds", 30)
    if drain is None or not drain.isdigit() or int(drain) >= grace:
        problems.append(f"terminationGracePeriodSeconds {grace} must exceed overlayd's --drain-timeout {drain}")
    security = overlayd.get("securityContext", {})
    for key, value in OVERLAYD_SECURITY_CONTEXT.items():
        if security.get(key) != value:
            problems.append(f"overlayd securityContext.{key} must be {value!r}, got {security.get(key)!r}")
    for container in (overlayd, envoy):
        resources = container.get("resources", {})
        for part in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(resources.get(part, {})):
                problems.append(f"{container['name']} resources.{part} needs cpu and memory")

    # The socket directory: one emptyDir, mounted at the same place in envoy and overlayd only.
    if socket_path:
        directory = socket_path.rsplit("/", 1)[0]
        mounts = {c["name"]: {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])} for c in containers.values()}
        volume = mounts["overlayd"].get(directory)
        if volume is None or mounts["envoy"].get(directory) != volume:
            problems.append(f"{directory} must be one volume mounted in both overlayd and envoy")
        elif "emptyDir" not in volumes.get(volume, {}):
            problems.append(f"volume {volume} for the socket must be an emptyDir")

    # Envoy: image, config from the ConfigMap, and that bootstrap agrees with the pod.
    if not envoy.get("image", "").startswith("envoyproxy/envoy:"):
        problems.append(f"envoy image {envoy.get('image')!r} is not envoyproxy/envoy")
    config_path = _arg(envoy.get("command", []) + envoy.get("args", []), "--config-path") \
        or _arg(envoy.get("command", []) + envoy.get("args", []), "-c")
    mount = next((m for m in envoy.get("volumeMounts", []) if config_path and config_path.startswith(m["mountPath"] + "/")), None)
    cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name") if mount else None
    if cm_name not in configmaps:
        problems.append(f"envoy --config-path {config_path!r} is not a file of a mounted ConfigMap of this set")
        return problems
    key = config_path.rsplit("/", 1)[1]
    text = configmaps[cm_name].get("data", {}).get(key)
    if text is None:
        problems.append(f"ConfigMap {cm_name} has no key {key!r}")
        return problems
    facts = _bootstrap_facts(text)
    pipe = facts.get("cluster:overlayd", {}).get("pipe", {}).get("path")
    if pipe != socket_path:
        problems.append(f"Envoy's overlayd cluster connects to {pipe!r}, overlayd listens on {socket_path!r}")
    http = all_ports.get("http")
    if http is None or http[0] != "envoy" or http[1] not in facts["listener_ports"]:
        problems.append(f"container port http {http} is not Envoy's listener {facts['listener_ports']}")
    app = facts.get("cluster:app", {}).get("socket_address", {})
    if all_ports.get("app") != ("app", app.get("port_value")):
        problems.append(f"Envoy's app cluster {app} is not the app container's port {all_ports.get('app')}")
    # One network namespace: every port bound in the pod must be distinct.
    bound = [("envoy listener", p) for p in facts["listener_ports"]] + [
        ("envoy admin", facts["admin_port"]), ("overlayd admin", admin_port), ("app", app.get("port_value"))]
    numbers = [n for _, n in bound if n is not None]
    if len(numbers) != len(set(numbers)):
        problems.append(f"two processes of the pod bind the same port: {bound}")
    if svc_ports.get("http", {}).get("targetPort") != "http":
        problems.append("Service port http must target Envoy (container port http), not the app")
    return problems


def configmap_mismatch(configmap: Path, source: Path, key: str = "envoy.yaml") -> str | None:
    """None if the ConfigMap's data[key] equals ``source`` byte for byte, else why not."""
    (doc,) = load_documents(configmap)
    embedded = doc.get("data", {}).get(key)
    if embedded is None:
        return f"{configmap}: no data[{key!r}]"
    want = source.read_bytes()
    got = embedded.encode()
    if got == want:
        return None
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    line = want[:at].count(b"\n") + 1
    return (f"{configmap} data[{key!r}] differs from {source} at byte {at} (line {line}); "
            "run python3 deploy/generate-envoy-configmap.py")
