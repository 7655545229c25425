"""Which new INVITEs the SIP endpoint takes: who may call, per-source and global call rates.

Access: a caller outside `allow` (when set) or whose User-Agent names a SIP scanner gets 403.
(Behind the Kamailio edge, those never reach the agent: the edge drops them.)

Why this exists, beyond politeness: pjsua opens a media transport (two sockets, an RTP and an
RTCP one) for every INVITE that gets a call slot, *before* the application sees the call, and
pjlib's select ioqueue keeps a closed socket's slot in a closing list for 500 ms before it can
be reused. Its table has 64 slots; when new calls churn faster than that (a scanner sending
150 INVITEs a second), registering the next socket hits an assertion and the process aborts.

So the endpoint bounds how fast call slots are recycled:
- a call it answers costs a token from a global bucket (`calls_per_s`, `burst`), and one from
  its source's bucket (`per_source_calls_per_s`, `per_source_burst`);
- every INVITE it rejects after pjsua gave it a slot (rate, busy, no route) is answered
  `reject_hold_ms` later, so the four slots turn over at most 4 / hold times a second; the
  INVITEs that arrive meanwhile find no free slot and get pjsua's stateless 486, which opens
  no socket at all.
With the defaults at most ~16 media transports are opened in any 500 ms: far below 64.

Pure logic with the clock passed in, so the rules are tested without a network.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate` tokens a second, holding at most `burst`; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    last: float = 0.0

    def take(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.last = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token (after a failed take)."""
        return max(1.0 - self.tokens, 0.0) / self.rate if self.rate > 0 else 3600.0


@dataclass(frozen=True)
class Rejection:
    code: int
    reason: str
    retry_after_s: int = 0  # a Retry-After header when > 0


class Admission:
    """Rate checks for new calls; one per SIP endpoint, used on the pjsip thread only."""

    def __init__(
        self,
        calls_per_s: float,
        burst: int,
        per_source_calls_per_s: float,
        per_source_burst: int,
        trusted: list[str] | tuple[str, ...] = (),
        max_sources: int = 4096,
        allow: list[str] | tuple[str, ...] = (),
        scanners: list[str] | tuple[str, ...] = (),
        calls_per_source: int = 0,
    ) -> None:
        self._global = TokenBucket(calls_per_s, burst)
        self._per_source = (per_source_calls_per_s, per_source_burst)
        self._sources: OrderedDict[str, TokenBucket] = OrderedDict()
        self._trusted = networks(trusted)
        self._allow = networks(allow)
        self._scanners = [s.lower() for s in scanners if s]
        self._max_sources = max_sources
        self._calls_per_source = calls_per_source  # 0: no limit
        self._up: dict[str, int] = {}  # calls up per source host

    def call_started(self, source: str) -> None:
        host = source_host(source)
        self._up[host] = self._up.get(host, 0) + 1

    def call_ended(self, source: str) -> None:
        host = source_host(source)
        left = self._up.get(host, 0) - 1
        if left > 0:
            self._up[host] = left
        else:
            self._up.pop(host, None)

    def caller_address(self, source: str, claimed: str | None) -> str:
        """The caller's address: the packet's `source`, or the address a trusted proxy in front
        (a cluster's Kamailio, an SBC) `claimed` for it in `sip.caller_header`."""
        return claimed if claimed and inside(source_host(source), self._trusted) else source

    def check(self, source: str, now: float, user_agent: str = "") -> Rejection | None:
        """None admits the call; a Rejection says what to answer."""
        host = source_host(source)
        ua = user_agent.lower()
        if any(s in ua for s in self._scanners):
            return Rejection(403, "Forbidden")
        if self._allow and not inside(host, self._allow):
            return Rejection(403, "Forbidden")
        if not inside(host, self._trusted):
            if self._calls_per_source and self._up.get(host, 0) >= self._calls_per_source:
                return Rejection(486, "Too many calls from your address")
            bucket = self._source_bucket(host)
            if not bucket.take(now):
                return Rejection(503, "Too many calls from your address", _retry(bucket))
        if not self._global.take(now):
            return Rejection(503, "Too many new calls", _retry(self._global))
        return None

    def _source_bucket(self, host: str) -> TokenBucket:
        bucket = self._sources.pop(host, None)
        if bucket is None:
            bucket = TokenBucket(*self._per_source)
            while len(self._sources) >= self._max_sources:  # bounded: many sources cannot eat memory
                self._sources.popitem(last=False)
        self._sources[host] = bucket  # most recently seen last
        return bucket


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: list[str] | tuple[str, ...]) -> list[Network]:
    """Parsed CIDRs (already validated by the config)."""
    return [ipaddress.ip_network(n, strict=False) for n in cidrs]


def inside(host: str, nets: list[Network]) -> bool:
    """The address `host` is in one of `nets`."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in nets)


def _retry(bucket: TokenBucket) -> int:
    return max(1, round(bucket.wait_s()))


def source_host(address: str) -> str:
    """The host of a pjsip source address: '127.0.0.2:5060' → '127.0.0.2', '[::1]:5060' → '::1'."""
    if address.startswith("["):
        return address[1 : address.find("]")] if "]" in address else address
    host, sep, port = address.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else address
