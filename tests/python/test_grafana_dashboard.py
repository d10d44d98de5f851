"""deploy/grafana/overlayd.json: parses, is laid out on Grafana's 24-column grid without overlaps,
every query uses the datasource variable and reads only metrics overlayd exports (the names in the
README's metric tables; that each exists on a running overlayd, through a real Prometheus:
test_prometheus_scrape.py), and it covers the fleet, overlays, models, drift and ext_proc.
"""

from __future__ import annotations

import json
import re

import prometheus_names as names
from overlayd_proc import REPO_ROOT


def _documented_metrics() -> set[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    found = set(re.findall(r"`(overlayd_[a-z0-9_]+)", readme))
    # Histograms are documented by their name; Prometheus stores _bucket/_sum/_count series.
    return found | {f"{name}_bucket" for name in found}


def test_the_dashboard_parses_and_names_itself():
    dash = json.loads(names.DASHBOARD.read_text())
    assert dash["uid"] == "overlayd" and dash["title"] == "overlayd"
    assert isinstance(dash["schemaVersion"], int)
    ids = [panel["id"] for panel in dash["panels"]]
    assert len(ids) == len(set(ids)), ids


def test_panels_sit_on_the_grid_without_overlapping():
    taken: dict[tuple[int, int], str] = {}
    for panel in names.dashboard()["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_query_uses_the_datasource_variable_and_documented_metrics():
    documented = _documented_metrics()
    targets = names.dashboard_targets()
    assert len(targets) >= 20
    for title, target in targets:
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        used = names.metric_names([target["expr"]])
        assert used, f"{title}: {target['expr']} reads no overlayd metric"
        assert used <= documented, f"{title}: {sorted(used - documented)} not in the README's metric tables"
        assert 'job=~"$job"' in target["expr"], f"{title}: not filtered by the job variable"


def test_the_dashboard_covers_fleet_overlays_models_drift_and_extproc():
    rows = [panel["title"] for panel in names.dashboard()["panels"] if panel["type"] == "row"]
    assert rows == ["Fleet", "Overlays", "Models", "Shadow and drift", "ext_proc"]
    used = names.metric_names(names.dashboard_exprs())
    for metric in ("overlayd_extproc_streams_open", "overlayd_injections_total", "overlayd_model_calls_total",
                   "overlayd_model_call_rate_forecast", "overlayd_model_breaker_open", "overlayd_drift_flag",
                   "overlayd_drift_similarity_mean", "overlayd_extproc_errors_total",
                   "overlayd_control_plane_consecutive_failures"):
        assert metric in used, metric


def test_the_rules_read_only_documented_metrics():
    documented = _documented_metrics()
    used = names.metric_names(names.rule_exprs())
    assert used <= documented, sorted(used - documented)
