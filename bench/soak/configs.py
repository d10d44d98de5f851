"""The desired-state documents of the soak.

``overlayd serve`` reads ``--config FILE``, which the soak rewrites every 5 s with
:func:`serve_cycle`: valid variants (the split changes, a model is added and removed again)
alternating with invalid ones (bad YAML, a bad weight, an unknown model) that must be rejected
while the last good one keeps serving. ``overlayd proxy`` follows the fake control plane, which
serves one of :func:`proxy_documents` when it works at all.

Hosts are the same in every valid variant, so whether a host is overlaid never depends on the
moment: ``OVERLAID`` maps each overlaid host to its overlay and every model that may appear in
its result island (fallbacks included); every other host must pass through byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

KEY_ENV = "SOAK_OPENAI_KEY"
PASS_THROUGH_HOSTS = ("legacy.soak", "www.other.test")

# host -> (overlay name, models that may serve it), for each front end
SERVE_OVERLAID = {
    "crm.soak": ("crm", {"oai", "mock-a"}),
    "erp.soak": ("erp", {"oai-fb", "oai-2", "mock-b"}),
    "mock.soak": ("mock", {"mock-a"}),
    "shadow.soak": ("shadowed", {"mock-a"}),
}
PROXY_OVERLAID = {
    "crm.soak": ("crm", {"oai-p", "mock-a"}),
    "mock.soak": ("mock", {"mock-a"}),
}

_COMMON = """\
  userKey: {header: x-user}
  prompt: {template: "Explain {{path}} on {{host}}"}
  injection: {latencyBudget: 150ms, json: {paths: ["/api/"]}}
"""


def _openai(name: str, base: str, fallback: str | None = None) -> str:
    fb = f"\n  fallback: {fallback}" if fallback else ""
    return f"""\
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: {name}}}
spec:
  provider: openai
  baseURL: {base}
  model: soak-gpt
  apiKey: {{env: {KEY_ENV}}}
  timeouts: {{connect: 300ms, total: 1s}}
  maxConcurrency: 16{fb}
"""


def _mock(name: str, latency: str) -> str:
    return f"""\
apiVersion: orchestrator.io/v1
kind: AIModel
metadata: {{name: {name}}}
spec: {{provider: mock, mock: {{latency: {latency}}}}}
"""


def _overlay(name: str, host: str, models: str, strategy: str = "Canary") -> str:
    return f"""\
apiVersion: orchestrator.io/v1
kind: AIOverlay
metadata: {{name: {name}}}
spec:
  hostApp: {host}
  strategy: {strategy}
  models: {models}
""" + _COMMON


def serve_document(base: str, crm_split: tuple[int, int], with_oai2: bool, *, crm_models: str | None = None,
                   extra: str = "") -> str:
    models = [_openai("oai", base), _openai("oai-fb", base, fallback="mock-b"), _mock("mock-a", "20ms"),
              _mock("mock-b", "0ms")]
    if with_oai2:
        models.append(_openai("oai-2", base))
    erp = "[{name: oai-fb, weight: 50}, {name: oai-2, weight: 50}]" if with_oai2 else "[{name: oai-fb, weight: 100}]"
    crm = crm_models or f"[{{name: oai, weight: {crm_split[0]}}}, {{name: mock-a, weight: {crm_split[1]}}}]"
    overlays = [_overlay("crm", "crm.soak", crm), _overlay("erp", "erp.soak", erp),
                _overlay("mock", "mock.soak", "[{name: mock-a}]"),
                _overlay("shadowed", "shadow.soak", "[{name: mock-a}, {name: oai}]", strategy="Shadow")]
    return "---\n".join(models + overlays) + extra


@dataclass(frozen=True)
class Variant:
    name: str
    text: str
    valid: bool


def serve_cycle(base: str) -> list[Variant]:
    """The order the config file goes through (then again from the start)."""
    v0 = serve_document(base, (50, 50), with_oai2=False)
    v1 = serve_document(base, (80, 20), with_oai2=True)
    v2 = serve_document(base, (0, 100), with_oai2=False)
    return [
        Variant("split 50/50", v0, True),
        Variant("bad YAML", v0 + "---\napiVersion: orchestrator.io/v1\nkind: AIOverlay\nspec: [unclosed, {\n", False),
        Variant("split 80/20, model oai-2 added", v1, True),
        Variant("bad weight", serve_document(base, (120, -20), with_oai2=True), False),
        Variant("split 0/100, model oai-2 removed", v2, True),
        Variant("unknown model", serve_document(base, (50, 50), with_oai2=False,
                                                crm_models="[{name: ghost, weight: 100}]"), False),
    ]


def proxy_documents(base: str) -> list[str]:
    """Two valid documents the control plane alternates between (each 'normal' phase changes it)."""
    def doc(split: tuple[int, int]) -> str:
        return "---\n".join([
            _openai("oai-p", base), _mock("mock-a", "20ms"),
            _overlay("crm", "crm.soak", f"[{{name: oai-p, weight: {split[0]}}}, {{name: mock-a, weight: {split[1]}}}]"),
            _overlay("mock", "mock.soak", "[{name: mock-a}]")])
    return [doc((50, 50)), doc((20, 80))]


def content_version(text: str) -> str:
    """overlayd's configuration version: FNV-1a 64 of the document's bytes, hex."""
    value = 0xcbf29ce484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"
