"""The operations files stay consistent with the code: every metric the dashboard queries exists."""

import json
import re
from pathlib import Path

from agent.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def exposed_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names |= {s.name for s in family.samples} | {family.name}
        names |= {f"{family.name}_{suffix}" for suffix in ("bucket", "count", "sum", "total")}
    return names


def test_dashboard_queries_only_metrics_we_expose():
    dash = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bvoice_agent_[a-z_]+", e)}
    assert used, "the dashboard must query something"
    assert used <= exposed_names(), used - exposed_names()


def test_metric_names_follow_prometheus_conventions():
    for family in Metrics().registry.collect():
        assert family.name.startswith("voice_agent_")
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "counter":
            assert not family.name.endswith("_total")  # the client appends _total


def test_systemd_unit_runs_serve_and_stops_with_sigterm():
    unit = (DEPLOY / "voice-agent.service").read_text()
    assert re.search(r"^ExecStart=\S+/voice-agent serve ", unit, re.M)
    assert "KillSignal=SIGTERM" in unit and "HF_HUB_OFFLINE=1" in unit
