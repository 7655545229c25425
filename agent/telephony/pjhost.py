"""What pjsua2's call and account classes need of the SIP endpoint, and `guarded`.

`SipCall`, `SipLeg` and `SipAccount` call back into their endpoint through this small protocol,
so they never import `agent.telephony.sip` (which imports them): no import cycle, not even for
type checking.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast

import structlog

from agent.metrics import Metrics
from agent.telephony.media import FrameBridge

log = structlog.get_logger("sip")
F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """For pjsua2 callbacks: an exception escaping into C++ (a SWIG director) aborts the
    process, so log it and carry on; the call and the process survive."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception:
            log.exception("pjsua2 callback failed", callback=fn.__qualname__)
            return None

    return cast(F, wrapper)  # same signature: functools.wraps


class SipHost(Protocol):
    """The endpoint, as its calls and account see it (pjsua2 objects are untyped: Any)."""

    metrics: Metrics

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """From the pjsip thread: run fn(*args) on the asyncio loop."""
        ...

    def acquire_port(self, bridge: FrameBridge) -> Any:
        """A conference-bridge port (FramePort) bound to this bridge (pjsip thread)."""
        ...

    def on_incoming(self, account: Any, prm: Any) -> None:
        """An INVITE arrived for `account` (pjsip thread)."""
        ...

    def on_disconnected(self, call: Any, code: int, reason: str) -> None:
        """A call ended (pjsip thread)."""
        ...

    async def hangup(self, pj_call_id: int, code: int = 0) -> None: ...

    async def transfer(self, pj_call_id: int, uri: str, timeout_s: float = 10.0) -> int: ...

    async def send_dtmf(self, pj_call_id: int, digits: str) -> bool: ...

    async def connect(self, a: int, b: int) -> bool: ...
