"""SDP offers and answers for one audio stream (RFC 4566 / 3264, the subset a phone uses)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

# payload type, encoding name, RTP clock rate, audio sample rate (G.722's clock says 8000: RFC 3551)
CODECS: dict[str, tuple[int, str, int, int]] = {
    "PCMU": (0, "PCMU", 8000, 8000),
    "PCMA": (8, "PCMA", 8000, 8000),
    "G722": (9, "G722", 8000, 16000),
}
DTMF_PT = 101


class SdpError(ValueError):
    """An SDP we cannot take (no audio, no codec in common, no address)."""


@dataclass(frozen=True)
class Media:
    """The negotiated audio stream: where to send, which payload types."""

    host: str
    port: int
    codec: str
    payload_type: int
    dtmf_pt: int | None


def offer(host: str, port: int, codecs: list[str], session_id: int | None = None) -> str:
    """An SDP offer of `codecs` (in preference order) plus telephone-event."""
    sid = session_id or int(time.time())
    pts = [CODECS[c][0] for c in codecs] + [DTMF_PT]
    rtpmaps = [f"a=rtpmap:{CODECS[c][0]} {CODECS[c][1]}/{CODECS[c][2]}" for c in codecs]
    lines = [
        "v=0",
        f"o=callsim {sid} {sid} IN IP4 {host}",
        "s=callsim",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}",
        *rtpmaps,
        f"a=rtpmap:{DTMF_PT} telephone-event/8000",
        f"a=fmtp:{DTMF_PT} 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    return "\r\n".join(lines) + "\r\n"


def answer_media(sdp: str, offered: list[str]) -> Media:
    """Read the peer's answer (or offer): its address and the first codec we also have."""
    host = ""
    port = -1
    pts: list[int] = []
    names: dict[int, str] = {}
    in_audio = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):  # m=<media> <port>[/<n>] <proto> <formats...>
            m = re.fullmatch(r"m=(\w+)\s+(\d{1,5})(?:/\d+)?\s+\S+((?:\s+\S+)*)", line)
            in_audio = m is not None and m.group(1) == "audio" and port < 0
            if m is not None and in_audio:
                port = int(m.group(2))
                pts = [int(p) for p in m.group(3).split() if p.isdigit() and len(p) <= 3]
        elif line.startswith("c=") and (in_audio or not host):
            host = line.split()[-1] if len(line.split()) == 3 else host
        elif in_audio and (m := re.match(r"a=rtpmap:(\d+)\s+([^/\s]+)", line)):
            names[int(m.group(1))] = m.group(2)
    if not 0 < port < 65536:
        raise SdpError("no active audio stream in the SDP")
    if not host:
        raise SdpError("no connection address in the SDP")
    static = {v[0]: k for k, v in CODECS.items()}
    dtmf = next((pt for pt in pts if names.get(pt, "").lower() == "telephone-event"), None)
    for pt in pts:
        name = names.get(pt, static.get(pt, "")).upper()
        if name in offered:
            return Media(host, port, name, pt, dtmf)
    raise SdpError(f"no codec in common: offered {offered}, got payload types {pts}")
