"""SIP OPTIONS over UDP: is a SIP endpoint alive? (worker readiness, health checks)"""

from __future__ import annotations

import asyncio
import socket

from agent.telephony import siptext


def options_request(host: str, port: int, local_port: int) -> bytes:
    tag, branch, call_id = (siptext.new_token() for _ in range(3))
    return siptext.request(
        "OPTIONS",
        f"sip:{host}:{port}",
        [
            ("Via", f"SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{branch};rport"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:ping@127.0.0.1>;tag={tag}"),
            ("To", f"<sip:{host}:{port}>"),
            ("Call-ID", f"{call_id}@voice-agent"),
            ("CSeq", "1 OPTIONS"),
        ],
    ).encode()


async def sip_ping(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when host:port answers an OPTIONS with 200."""
    return await asyncio.to_thread(_ping, host, port, timeout_s)


def _ping(host: str, port: int, timeout_s: float) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1" if host.startswith("127.") else "", 0))
        s.settimeout(timeout_s)
        try:
            s.sendto(options_request(host, port, s.getsockname()[1]), (host, port))
            data, _ = s.recvfrom(65535)
        except OSError:
            return False
    try:
        return siptext.parse(data).status == 200
    except siptext.SipParseError:
        return False
