"""SIP OPTIONS over UDP: is a SIP endpoint alive? (worker readiness, health checks)"""

from __future__ import annotations

import asyncio
import secrets
import socket


def options_request(host: str, port: int, local_port: int) -> bytes:
    tag, branch, call_id = (secrets.token_hex(6) for _ in range(3))
    return (
        f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:ping@127.0.0.1>;tag={tag}\r\n"
        f"To: <sip:{host}:{port}>\r\n"
        f"Call-ID: {call_id}@voice-agent\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
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
    return data.startswith(b"SIP/2.0 200")
