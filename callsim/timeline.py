"""The picture of one call, as inline SVG: caller on top, agent below, on one time axis.

Shaded spans are who talks (the caller's turns as sent; the agent's speech as callsim's VAD
found it). Between the lanes: green arrows for voice-to-voice latency, red for barge-ins (from
the caller's first word to the agent falling silent), purple for a transfer request.
"""

from __future__ import annotations

from html import escape
from typing import Any

W, LEFT, RIGHT = 1100, 74, 16
CALLER, AGENT = (34, 104), (150, 220)  # lane top, bottom
AXIS = 252
H = 278
BLUE, ORANGE, GREEN, RED, PURPLE = "#2f6fdf", "#e07b00", "#137333", "#c5221f", "#7b3fb6"


def timeline_svg(r: dict[str, Any]) -> str:
    duration = max(r["duration_s"], 0.5)
    scale = (W - LEFT - RIGHT) / duration

    def x(t: float) -> float:
        return round(LEFT + max(0.0, min(t, duration)) * scale, 1)

    out = [
        f'<svg class=timeline viewBox="0 0 {W} {H}" xmlns="http://www.w3.org/2000/svg" '
        f'font-family="system-ui,sans-serif" font-size="11" role="img" aria-label="call timeline">',
        f'<rect width="{W}" height="{H}" fill="#fff"/>',
    ]
    for (top, bottom), name, color in ((CALLER, "caller", BLUE), (AGENT, "agent", ORANGE)):
        out.append(
            f'<rect x="{LEFT}" y="{top}" width="{W - LEFT - RIGHT}" height="{bottom - top}" fill="#f7f8fa"/>'
        )
        out.append(
            f'<text x="8" y="{(top + bottom) / 2 + 4}" font-size="13" font-weight="600" fill="{color}">'
            f"{name}</text>"
        )
    played = [t for t in r["turns"] if t.get("start_s") is not None and t.get("end_s") is not None]
    for i, t in enumerate(played):
        x0, x1 = x(t["start_s"]), x(t["end_s"])
        if t["kind"] != "silence_s":
            out.append(
                f'<rect x="{x0}" y="{CALLER[0]}" width="{max(x1 - x0, 1)}" '
                f'height="{CALLER[1] - CALLER[0]}" fill="#dbe7fb"/>'
            )
        room = (x(played[i + 1]["start_s"]) if i + 1 < len(played) else W - 110) - x0
        out.append(f'<text x="{x0}" y="{CALLER[0] - 6}" fill="{BLUE}">{escape(_fit(t, room))}</text>')
    for s, e in r["agent_segments"]:
        out.append(
            f'<rect x="{x(s)}" y="{AGENT[0]}" width="{max(x(e) - x(s), 1)}" height="{AGENT[1] - AGENT[0]}" '
            f'fill="#fde7cf"/>'
        )
    env = r.get("envelope") or {}
    step = env.get("step_s", 0.02)
    out.append(_wave(env.get("caller", []), step, x, CALLER, BLUE))
    out.append(_wave(env.get("agent", []), step, x, AGENT, ORANGE))
    out += _annotations(r, x)
    out += _axis(duration, x)
    out.append("</svg>")
    return "\n".join(out)


def _vline(x0: float, y1: float, y2: float, color: str, style: str = "") -> str:
    return f'<line x1="{x0}" y1="{y1}" x2="{x0}" y2="{y2}" stroke="{color}" {style}/>'


def _fit(t: dict[str, Any], room_px: float) -> str:
    """The turn's label, cut to the room before the next one (about 6 px a character)."""
    label = f"T{t['index'] + 1} {t['text']}"
    chars = max(2, int(room_px / 6.2) - 1)
    return label if len(label) <= chars else label[: chars - 1] + "…"


def _wave(peaks: list[float], step: float, x, lane: tuple[int, int], color: str) -> str:
    if not peaks:
        return ""
    group = max(1, len(peaks) // 1400)  # at most ~1400 columns
    cols = [max(peaks[i : i + group]) for i in range(0, len(peaks), group)]
    mid, half = (lane[0] + lane[1]) / 2, (lane[1] - lane[0]) / 2 - 2
    top = [f"{x(i * group * step)},{mid - min(1.0, p * 2.5) * half:.1f}" for i, p in enumerate(cols)]
    bottom = [
        f"{x(i * group * step)},{mid + min(1.0, p * 2.5) * half:.1f}"
        for i, p in reversed(list(enumerate(cols)))
    ]
    return f'<polygon points="{" ".join(top + bottom)}" fill="{color}" fill-opacity="0.85"/>'


def _arrow(x0: float, x1: float, y: float, color: str, label: str) -> list[str]:
    """A measured interval: a line from x0 to x1 with its label above, starting at x0."""
    return [
        f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="{color}" stroke-width="2"/>',
        f'<path d="M{x1},{y} l-6,-4 v8 z" fill="{color}"/>' if x1 - x0 > 8 else "",
        f'<text x="{x0}" y="{y - 5}" fill="{color}" font-weight="600">{escape(label)}</text>',
    ]


def _annotations(r: dict[str, Any], x) -> list[str]:
    out: list[str] = []
    between = (CALLER[1] + AGENT[0]) / 2 + 8
    g = r["greeting"].get("first_audio_ms")
    if g is not None:
        out += _arrow(x(0), x(g / 1000), between, GREEN, f"first audio {g / 1000:.2f} s")
    for t in r["turns"]:
        if t.get("end_s") is None:
            continue
        v2v, stop = t.get("voice_to_voice_ms"), t.get("barge_in_stop_ms")
        if v2v is not None:
            x0, x1 = x(t["end_s"]), x(t["end_s"] + v2v / 1000)
            out.append(_vline(x0, CALLER[1], AGENT[0], GREEN, 'stroke-dasharray="3 3"'))
            out += _arrow(x0, x1, between, GREEN, f"{v2v:.0f} ms")
        if t.get("agent_stopped") is not None:
            x0 = x(t["start_s"])
            out.append(_vline(x0, CALLER[0], AGENT[1], RED, 'stroke-width="1.5"'))
            if stop is not None:
                out += _arrow(
                    x0,
                    x(t["start_s"] + stop / 1000),
                    AGENT[1] + 14,
                    RED,
                    f"barge-in: stopped in {stop:.0f} ms",
                )
            else:
                out.append(
                    f'<text x="{x0 + 4}" y="{AGENT[1] + 14}" fill="{RED}" font-weight="600">'
                    "barge-in: agent did not stop</text>"
                )
    for tr in r["transfers"]:
        x0 = x(tr["at_s"])
        out.append(_vline(x0, CALLER[0], AGENT[1], PURPLE, 'stroke-width="2" stroke-dasharray="6 3"'))
        out.append(
            f'<text x="{x0 - 4}" y="{AGENT[0] - 4}" text-anchor="end" fill="{PURPLE}" font-weight="600">'
            f"transfer → {escape(tr['refer_to'])}</text>"
        )
    if r["ended_by"]:
        out.append(
            f'<text x="{W - RIGHT}" y="{CALLER[0] - 6}" text-anchor="end" fill="#444">'
            f"hung up by {escape(r['ended_by'])}</text>"
        )
    return out


def _axis(duration: float, x) -> list[str]:
    step = next(s for s in (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300) if duration / s <= 16)
    out = [f'<line x1="{LEFT}" y1="{AXIS}" x2="{W - RIGHT}" y2="{AXIS}" stroke="#98a2b3"/>']
    t = 0.0
    while t <= duration + 1e-9:
        out.append(f'<line x1="{x(t)}" y1="{AXIS}" x2="{x(t)}" y2="{AXIS + 5}" stroke="#98a2b3"/>')
        out.append(f'<text x="{x(t)}" y="{AXIS + 18}" text-anchor="middle" fill="#667085">{t:g} s</text>')
        t += step
    return out
