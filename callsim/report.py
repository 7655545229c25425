"""Reports: the summary of many calls (percentiles, pass/fail, errors) and one self-contained
report.html with a timeline picture per call. Built only from result.json data, so
`callsim report DIR` can rebuild it any time."""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from callsim.timeline import timeline_svg

METRICS = {  # summary name -> how to pull the values out of one result
    "setup_ms": lambda r: [r["setup_ms"]],
    "greeting_first_audio_ms": lambda r: [r["greeting"]["first_audio_ms"]],
    "voice_to_voice_ms": lambda r: [t.get("voice_to_voice_ms") for t in r["turns"]],
    "barge_in_stop_ms": lambda r: [t.get("barge_in_stop_ms") for t in r["turns"]],
    "talk_over_ms": lambda r: [
        t.get("talk_over_ms") for t in r["turns"] if t.get("agent_stopped") is not None
    ],
}


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every result.json under `folder`, in path order."""
    return [json.loads(p.read_text()) for p in sorted(folder.rglob("result.json"))]


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    failed = [r for r in results if not r["passed"]]
    summary: dict[str, Any] = {
        "calls": len(results),
        "passed": len(results) - len(failed),
        "failed": len(failed),
        "errors": [
            {"call": r.get("call", i), "scenario": r["scenario"], "error": r["error"]}
            for i, r in enumerate(results)
            if r["error"]
        ],
        "failed_checks": {},
        "latency": {},
    }
    for r in failed:
        for c in r["checks"]:
            if not c["passed"]:
                summary["failed_checks"][c["check"]] = summary["failed_checks"].get(c["check"], 0) + 1
    for name, pull in METRICS.items():
        values = [v for r in results for v in pull(r) if v is not None]
        summary["latency"][name] = _stats(values)
    return summary


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    a = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(a, [50, 95, 99])
    return {
        "n": len(a),
        "p50": round(p50, 1),
        "p95": round(p95, 1),
        "p99": round(p99, 1),
        "min": round(a.min(), 1),
        "max": round(a.max(), 1),
        "mean": round(a.mean(), 1),
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as the terminal shows it."""
    lines = [
        f"calls {s['calls']}   passed {s['passed']}   failed {s['failed']}   errors {len(s['errors'])}",
        "",
    ]
    lines.append(f"{'metric':<26}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
    for name, st in s["latency"].items():
        if st["n"]:
            lines.append(f"{name:<26}{st['n']:>5}{st['p50']:>9}{st['p95']:>9}{st['p99']:>9}{st['max']:>9}")
        else:
            lines.append(f"{name:<26}{0:>5}{'-':>9}{'-':>9}{'-':>9}{'-':>9}")
    for check, n in s["failed_checks"].items():
        lines.append(f"FAILED x{n}: {check}")
    for e in s["errors"]:
        lines.append(f"ERROR call {e['call']} ({e['scenario']}): {e['error']}")
    return "\n".join(lines)


def write_report(
    folder: Path, results: list[dict[str, Any]], title: str = "callsim report"
) -> dict[str, Any]:
    """summary.json and report.html in `folder`; returns the summary."""
    summary = summarize(results)
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    (folder / "report.html").write_text(render_html(title, summary, results), encoding="utf-8")
    return summary


# --- HTML ---------------------------------------------------------------------------------
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;
 color:#1d2430;background:#f6f7f9;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:0}.muted{color:#667085}
.cards{display:flex;gap:12px;margin:16px 0;flex-wrap:wrap}
.card{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:10px 16px;min-width:90px}
.card b{display:block;font-size:22px}.pass{color:#137333}.fail{color:#b3261e}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}
th,td{border-bottom:1px solid #e2e5ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
section.call{background:#fff;border:1px solid #e2e5ea;border-radius:10px;padding:14px 16px;margin:18px 0}
section.call header{display:flex;justify-content:space-between;align-items:baseline;gap:12px;flex-wrap:wrap}
.badge{border-radius:12px;padding:2px 10px;font-weight:600;font-size:13px}
.badge.pass{background:#e6f4ea}.badge.fail{background:#fce8e6}
svg.timeline{width:100%;height:auto;display:block;margin:10px 0}
ul.checks{margin:6px 0;padding-left:18px}
"""


def render_html(title: str, summary: dict[str, Any], results: list[dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{escape(k)}</td>"
        + "".join(f"<td class=n>{st.get(q, '–')}</td>" for q in ("n", "p50", "p95", "p99", "max"))
        + "</tr>"
        for k, st in summary["latency"].items()
    )
    errors = "".join(
        f"<li class=fail>call {e['call']} ({escape(e['scenario'])}): {escape(e['error'])}</li>"
        for e in summary["errors"]
    )
    calls = "".join(_call_html(i, r) for i, r in enumerate(results))
    return f"""<!doctype html><html lang=en><head><meta charset=utf-8>
<meta name=viewport content="width=device-width,initial-scale=1"><title>{escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{escape(title)}</h1><div class=muted>{len(results)} call(s) · times from the audio on the wire</div>
<div class=cards><div class=card>calls<b>{summary["calls"]}</b></div>
<div class=card>passed<b class=pass>{summary["passed"]}</b></div>
<div class=card>failed<b class={"fail" if summary["failed"] else "pass"}>{summary["failed"]}</b></div>
<div class=card>errors<b class={"fail" if summary["errors"] else "pass"}>{len(summary["errors"])}</b>
</div></div>
<table><tr><th>latency (ms)</th><th>n</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>{rows}</table>
<ul>{errors}</ul>{calls}</body></html>"""


def _call_html(i: int, r: dict[str, Any]) -> str:
    ok = r["passed"]
    checks = "".join(
        f"<li class={'pass' if c['passed'] else 'fail'}>{'✓' if c['passed'] else '✗'} "
        f"{escape(c['check'])} <span class=muted>— {escape(c['detail'])}</span></li>"
        for c in r["checks"]
    )
    turns = "".join(
        f"<tr><td>{t['index'] + 1}</td><td>{escape(t['text'])}</td><td>{escape(t['wait'])}</td>"
        f"<td class=n>{_v(t.get('voice_to_voice_ms'))}</td><td class=n>{_v(t.get('barge_in_stop_ms'))}</td>"
        f"<td class=n>{_v(t.get('talk_over_ms'))}</td>"
        f"<td>{escape(t.get('transcript') or t.get('skipped') or '')}</td></tr>"
        for t in r["turns"]
    )
    g = r["greeting"]
    meta = (
        f"{escape(r['target'])} · {escape(r['codec'])} · setup {_v(r['setup_ms'])} ms · "
        f"{r['duration_s']:.1f} s · ended by {escape(r['ended_by'] or 'nobody')}"
    )
    error = f"<p class=fail>Error: {escape(r['error'])}</p>" if r["error"] else ""
    return f"""<section class=call id=call-{i}><header>
<h2>Call {r.get("call", i)}: {escape(r["scenario"])}</h2>
<span class="badge {"pass" if ok else "fail"}">{"PASSED" if ok else "FAILED"}</span></header>
<div class=muted>{meta}</div>{error}{timeline_svg(r)}
<table><tr><th>#</th><th>caller</th><th>wait</th><th>voice→voice ms</th><th>barge-in stop ms</th>
<th>talk-over ms</th><th>agent said (callsim's transcript)</th></tr>
<tr><td>0</td><td class=muted>(greeting)</td><td></td><td class=n>{_v(g["first_audio_ms"])}</td>
<td></td><td></td>
<td>{escape(g["transcript"])}</td></tr>{turns}</table><ul class=checks>{checks}</ul></section>"""


def _v(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"
