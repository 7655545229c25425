"""The caller's SIP user agent: one UDP socket, one INVITE dialog (RFC 3261 over UDP).

It places the call (retransmitting on Timer A until an answer), ACKs, answers the peer's
in-dialog requests (BYE, re-INVITE, REFER, INFO, OPTIONS), and sends BYE. No authentication:
callsim calls agents directly or through a proxy that trusts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field

import structlog

from agent.telephony import siptext
from agent.telephony.siptext import SipMessage

log = structlog.get_logger("callsim.sip")
T1 = 0.5
_TARGET = re.compile(r"^sips?:(?:([^@;>]+)@)?([^:;>]+)(?::(\d+))?")


class CallFailed(RuntimeError):
    """The call could not be set up (rejected, timed out, bad answer)."""


@dataclass
class ReferRecord:
    """A REFER the agent sent us: where it wanted the caller to go, and when."""

    refer_to: str
    at: float  # loop time


@dataclass
class DialogEvents:
    """What the peer did, with loop-clock times."""

    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: str = ""  # "caller" | "agent"
    transfers: list[ReferRecord] = field(default_factory=list)


def parse_target(uri: str) -> tuple[str, str, int]:
    """'sip:agent@127.0.0.1:5060' -> ('agent', '127.0.0.1', 5060)."""
    m = _TARGET.match(uri.strip())
    if not m:
        raise ValueError(f"not a SIP URI: {uri!r} (expected sip:USER@HOST:PORT)")
    return m.group(1) or "", m.group(2), int(m.group(3) or 5060)


class SipUA(asyncio.DatagramProtocol):
    """One outgoing call. `invite()` returns the answer's SDP body; `bye()` ends the call."""

    def __init__(
        self, target: str, local_host: str = "127.0.0.1", user: str = "callsim", refer: str = "accept"
    ) -> None:
        self.target = target
        self.refer = refer  # "accept": the transfer works; "busy": its target answers 486
        self.user, self.host, self.port = parse_target(target)
        self.local_host = local_host
        self.from_user = user
        self.events = DialogEvents()
        self.ended = asyncio.Event()  # BYE sent or received
        self.over = asyncio.Event()  # ended, or the agent transferred the caller away
        self.local_sdp = ""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None
        self._local_port = 0
        self._call_id = f"{siptext.new_token()}@callsim"
        self._from_tag = siptext.new_token()
        self._to_tag = ""
        self._cseq = 0
        self._remote_target = target
        self._routes: list[str] = []
        self._pending: dict[int, asyncio.Future[SipMessage]] = {}  # by CSeq number
        self._ack: bytes | None = None
        self._provisional: set[int] = set()  # CSeqs that got a 1xx: no more retransmissions

    async def bind(self) -> None:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.local_host, 0)
        )
        self._transport = transport  # type: ignore[assignment]
        self._local_port = transport.get_extra_info("sockname")[1]

    def close(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.cancel()
        if self._transport is not None:
            self._transport.close()

    # --- requests we send ---------------------------------------------------------------
    async def invite(self, sdp: str, timeout_s: float = 32.0) -> SipMessage:
        """Send the INVITE; return the 2xx (ACKed). Raises CallFailed on any other outcome."""
        self.local_sdp = sdp
        req = self._request("INVITE", self.target, [("content-type", "application/sdp")], sdp)
        final = await self._transact(req, timeout_s)
        if final is None:
            raise CallFailed(f"no answer to INVITE within {timeout_s:.0f} s")
        if final.status >= 300:
            self._ack_failure(req, final)
            raise CallFailed(f"INVITE rejected: {final.start[8:]}")
        self._to_tag = siptext.tag_of(final.get("to"))
        self._remote_target = siptext.uri_of(final.get("contact")) or self.target
        self._routes = [
            siptext.uri_of(r) for rr in reversed(final.get_all("record-route")) for r in rr.split(",")
        ]
        self.events.answered_at = self._loop.time()
        ack = self._request("ACK", self._remote_target, cseq=req.cseq[0])
        self._ack = ack.encode()
        self._send_raw(self._ack, self._next_hop())
        return final

    async def bye(self, timeout_s: float = 4.0) -> None:
        """Hang up (if the call is still up); waits for the 200 or the timeout."""
        if self.ended.is_set() or self.events.answered_at is None:
            return
        self._end("caller")
        await self._transact(self._request("BYE", self._remote_target), timeout_s)

    def _request(
        self, method: str, uri: str, extra=(), body: str = "", cseq: int | None = None, branch: str = ""
    ) -> SipMessage:
        """A request in our dialog; a new transaction (branch) unless one is given."""
        if cseq is None:
            self._cseq += 1
            cseq = self._cseq
        branch = branch or f"z9hG4bK{siptext.new_token()}"
        to = f"<{self.target}>" + (f";tag={self._to_tag}" if self._to_tag else "")
        headers = [
            ("via", f"SIP/2.0/UDP {self.local_host}:{self._local_port};branch={branch};rport"),
            ("max-forwards", "70"),
            ("from", f"<sip:{self.from_user}@{self.local_host}>;tag={self._from_tag}"),
            ("to", to),
            ("call-id", self._call_id),
            ("cseq", f"{cseq} {method}"),
            ("contact", f"<sip:{self.from_user}@{self.local_host}:{self._local_port}>"),
            *[("route", f"<{r}>") for r in (self._routes if method != "INVITE" else [])],
            ("user-agent", "callsim"),
            *extra,
        ]
        return SipMessage(f"{method} {uri} SIP/2.0", headers, body)

    async def _transact(self, req: SipMessage, timeout_s: float) -> SipMessage | None:
        """Send with Timer A/E retransmissions until a final response (None on timeout)."""
        fut: asyncio.Future[SipMessage] = self._loop.create_future()
        self._pending[req.cseq[0]] = fut
        data, hop = req.encode(), self._next_hop()
        deadline = self._loop.time() + timeout_s
        interval = T1
        try:
            while not fut.done():
                self._send_raw(data, hop)
                wait = min(interval, deadline - self._loop.time())
                if wait <= 0:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(fut), wait)
                # A provisional response stops retransmission of an INVITE (Timer A).
                interval = timeout_s if req.cseq[0] in self._provisional else min(interval * 2, 4.0)
            return fut.result()
        except asyncio.CancelledError:
            if fut.cancelled():
                return None
            raise
        finally:
            self._pending.pop(req.cseq[0], None)

    def _ack_failure(self, invite: SipMessage, final: SipMessage) -> None:
        # The ACK of a failure belongs to the INVITE's transaction: same branch (RFC 3261 17.1.1.3).
        self._to_tag = siptext.tag_of(final.get("to"))
        branch = invite.get("via").split("branch=")[1].split(";")[0]
        ack = self._request("ACK", self.target, cseq=invite.cseq[0], branch=branch)
        self._send_raw(ack.encode(), (self.host, self.port))

    def _next_hop(self) -> tuple[str, int]:
        uri = self._routes[0] if self._routes else self._remote_target
        _, host, port = parse_target(uri)
        return host, port

    def _send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._transport is not None:
            self._transport.sendto(data, addr)

    # --- what arrives -------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return  # keep-alive
        try:
            msg = siptext.parse(data)
        except siptext.SipParseError as exc:
            log.warning("unreadable SIP datagram", peer=f"{addr[0]}:{addr[1]}", error=str(exc))
            return
        if msg.is_request:
            self._on_request(msg, addr)
        else:
            self._on_response(msg)

    def _on_response(self, msg: SipMessage) -> None:
        num, method = msg.cseq
        if msg.status < 200:
            self._provisional.add(num)
            if msg.status in (180, 183) and self.events.ringing_at is None:
                self.events.ringing_at = self._loop.time()
            return
        fut = self._pending.get(num)
        if fut is not None and not fut.done():
            fut.set_result(msg)
        elif method == "INVITE" and msg.status < 300 and self._ack is not None:
            self._send_raw(self._ack, self._next_hop())  # our ACK was lost: the 200 is retransmitted

    def _on_request(self, req: SipMessage, addr: tuple[str, int]) -> None:
        method = req.method
        if method == "ACK":
            return
        if req.get("call-id") != self._call_id:
            self._reply(req, addr, 481, "Call/Transaction Does Not Exist")
            return
        if method == "BYE":
            self._reply(req, addr, 200, "OK")
            self._end("agent")
        elif method == "INVITE":  # re-INVITE (hold, codec change, session refresh): keep our media
            self._reply(
                req, addr, 200, "OK", [("content-type", "application/sdp"), self._contact()], self.local_sdp
            )
        elif method == "REFER":
            self._on_refer(req, addr)
        elif method in ("INFO", "OPTIONS", "NOTIFY", "UPDATE"):
            self._reply(req, addr, 200, "OK")
        else:
            self._reply(req, addr, 501, "Not Implemented")

    def _on_refer(self, req: SipMessage, addr: tuple[str, int]) -> None:
        """A blind transfer: record where to, accept it, and report how it went (RFC 3515):
        success (the agent then hangs up), or with `refer="busy"` a target that answered 486
        (the call stays with the agent).

        callsim does not call the transfer target; a real phone would.
        """
        refer_to = siptext.uri_of(req.get("refer-to"))
        self.events.transfers.append(ReferRecord(refer_to, self._loop.time()))
        busy = self.refer == "busy"
        if not busy:
            self.over.set()
        log.info("transfer requested", refer_to=refer_to, outcome=self.refer)
        self._reply(req, addr, 202, "Accepted", [self._contact()])
        frags = ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"] if busy else ["SIP/2.0 200 OK"]
        for i, frag in enumerate(frags):
            final = i == len(frags) - 1
            state = "terminated;reason=noresource" if final else "active;expires=60"
            notify = self._request(
                "NOTIFY",
                self._remote_target,
                [
                    ("event", "refer"),
                    ("subscription-state", state),
                    ("content-type", "message/sipfrag;version=2.0"),
                ],
                f"{frag}\r\n",
            )
            task = asyncio.ensure_future(self._transact(notify, 4.0))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _reply(self, req: SipMessage, addr: tuple[str, int], status: int, reason: str, extra=(), body=""):
        resp = siptext.response(req, status, reason, self._from_tag, extra, body)
        self._send_raw(resp.encode(), addr)

    def _contact(self) -> tuple[str, str]:
        return ("contact", f"<sip:{self.from_user}@{self.local_host}:{self._local_port}>")

    def _end(self, by: str) -> None:
        if not self.ended.is_set():
            self.events.ended_at = self._loop.time()
            self.events.ended_by = by
            self.ended.set()
            self.over.set()
