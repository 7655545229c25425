"""One SIP call in pjsua2: the Call subclass, its media port, and the leg the session sees.

`SipCall` and `FramePort` live and die on the pjsip thread; `SipLeg` lives on the asyncio side
and refers to its call only by id, so nothing on the asyncio side can keep a pjsua2 object
alive past `libDestroy()`.
"""

from __future__ import annotations

from collections.abc import Callable

import pjsua2 as pj
import structlog

from agent.telephony.call import BridgedLeg, CallInfo
from agent.telephony.media import FrameBridge
from agent.telephony.pjhost import SipHost, guarded
from agent.telephony.siptext import SipParseError, info_key, parse, uri_user

log = structlog.get_logger("sip")


class FramePort(pj.AudioMediaPort):
    """A conference-bridge port whose frames go to / come from the FrameBridge bound to it.

    Its callbacks run on pjsip's media clock thread: they only copy bytes. Ports are pooled by
    the endpoint and never destroyed while pjsua runs: since pjproject 2.14 the bridge removes
    a port on its clock thread *after* the removal request, so a deleted Python port could
    still be called once more (a use-after-free that corrupted the heap in our tests).
    """

    def __init__(self, rate: int, name: str) -> None:
        super().__init__()
        self.bridge: FrameBridge | None = None
        self._frame_bytes = rate // 50 * 2
        self._silence = pj.ByteVector(bytes(self._frame_bytes))
        fmt = pj.MediaFormatAudio()
        fmt.init(pj.PJMEDIA_FORMAT_PCM, rate, 1, 20000, 16)
        self.createPort(name, fmt)

    @guarded
    def onFrameReceived(self, frame: pj.MediaFrame) -> None:
        bridge = self.bridge  # one read: the pjsip thread may unbind it meanwhile
        if bridge is None:
            return
        if frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO and frame.size:
            bridge.push_inbound(bytes(frame.buf))
        else:  # keep the caller's clock ticking through silence
            bridge.push_inbound(bytes(self._frame_bytes))

    @guarded
    def onFrameRequested(self, frame: pj.MediaFrame) -> None:
        bridge = self.bridge
        data = bridge.pull_outbound() if bridge is not None else None
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = self._silence if data is None else pj.ByteVector(data)
        frame.size = self._frame_bytes


class SipCall(pj.Call):
    """pjsua2 call with our callbacks; owned by the endpoint's registry on the pjsip thread."""

    def __init__(self, endpoint: SipHost, account: pj.Account, call_id: int = pj.PJSUA_INVALID_ID) -> None:
        super().__init__(account, call_id)
        self.endpoint = endpoint
        self.leg: SipLeg | None = None
        self.source = ""  # an incoming call's packet source, "host:port" (what admission counted)
        self.port: FramePort | None = None
        self.on_transfer_status: Callable[[int], None] | None = None  # set by a pending REFER
        self.outbound = call_id == pj.PJSUA_INVALID_ID  # we placed it (makeCall)
        self.on_answered: Callable[[], None] | None = None  # an outgoing call's 200 OK
        self.on_ringing: Callable[[], None] | None = None  # its first 18x
        self.peer: SipCall | None = None  # the call whose audio is joined to ours (a bridge)

    def respond(self, code: int, reason: str = "", retry_after_s: int = 0) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        if reason:
            prm.reason = reason
        if retry_after_s:
            header = pj.SipHeader()
            header.hName, header.hValue = "Retry-After", str(retry_after_s)
            prm.txOption.headers.append(header)
        self.answer(prm)

    def end(self, code: int = 0) -> None:
        prm = pj.CallOpParam()
        if code:
            prm.statusCode = code
        self.hangup(prm)

    @guarded
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        ci = self.getInfo()
        log.debug("call state", call_id=ci.callIdString, state=ci.stateText, code=ci.lastStatusCode)
        if ci.state == pj.PJSIP_INV_STATE_EARLY and self.on_ringing is not None:
            self.on_ringing()
            self.on_ringing = None
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED and self.on_answered is not None:
            self.on_answered()
            self.on_answered = None
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.endpoint.on_disconnected(self, ci.lastStatusCode, ci.lastReason)

    @guarded
    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        if self.leg is None:
            return
        ci = self.getInfo()
        for mi in ci.media:
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or mi.status not in (
                pj.PJSUA_CALL_MEDIA_ACTIVE,
                pj.PJSUA_CALL_MEDIA_REMOTE_HOLD,
            ):
                continue
            media = self.getAudioMedia(mi.index)
            if self.peer is not None:  # bridged: a re-INVITE's new media joins the peer's
                self.join(self.peer)
                continue
            if self.port is None:
                self.port = self.endpoint.acquire_port(self.leg.bridge)
            # Re-INVITEs may bring a new media object: (re)connect both directions.
            media.startTransmit(self.port)
            self.port.startTransmit(media)
            si = self.getStreamInfo(mi.index)
            self.endpoint.post(self.leg.set_media, f"{si.codecName}/{si.codecClockRate}", si.remoteRtpAddress)

    def join(self, other: SipCall) -> None:
        """Our audio to `other` and its audio to us, the agent's port out of both (pjsip
        thread; raises pj.Error if either has no active audio)."""
        mine, theirs = self.getAudioMedia(-1), other.getAudioMedia(-1)
        for call, media in ((self, mine), (other, theirs)):
            if call.port is not None:
                media.stopTransmit(call.port)
                call.port.stopTransmit(media)
        mine.startTransmit(theirs)
        theirs.startTransmit(mine)
        self.peer, other.peer = other, self

    @guarded
    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        # The last moment pjsua's RTP and jitter-buffer statistics of this stream can be read.
        stat = self.getStreamStat(prm.streamIdx)
        rx, tx, jb = stat.rtcp.rxStat, stat.rtcp.txStat, stat.jbuf
        m = self.endpoint.metrics
        m.rtp_packets.labels("received").inc(rx.pkt)
        m.rtp_packets.labels("sent").inc(tx.pkt)
        m.rtp_lost.inc(rx.loss)
        if rx.jitterUsec.n:
            m.rtp_jitter.observe(rx.jitterUsec.mean / 1e6)
        if jb.avgDelayMsec:
            m.jitter_buffer_delay.observe(jb.avgDelayMsec / 1e3)
        m.jitter_buffer_discarded.inc(jb.discard)
        log.info("rtp stats", call_id=self.leg.info.call_id if self.leg else "", rx_packets=rx.pkt,
                 rx_lost=rx.loss, tx_packets=tx.pkt, jitter_ms=round(rx.jitterUsec.mean / 1e3, 2),
                 jb_delay_ms=jb.avgDelayMsec, jb_discarded=jb.discard)  # fmt: skip

    @guarded
    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # NOTIFYs of our REFER: 202 first, then the transferee's call progress; report the final one.
        log.info("transfer status", code=prm.statusCode, reason=prm.reason, final=prm.finalNotify)
        done = prm.finalNotify or (prm.statusCode >= 200 and prm.statusCode != 202)
        if done and self.on_transfer_status is not None:
            self.on_transfer_status(prm.statusCode)
            self.on_transfer_status = None
            prm.cont = False

    @guarded
    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        # RFC 4733 events, and SIP INFO with application/dtmf-relay (pjsua answers those 200).
        if self.leg is not None:
            self.endpoint.post(self.leg.dtmf.put_nowait, prm.digit)

    @guarded
    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        """SIP INFO with `application/dtmf` (the key alone): pjsua does not read those, and
        pjsua2 gives no way to answer them, so pjsip answers 500 but the key is taken. (A
        Kamailio edge, `sip.edge`, turns them into dtmf-relay first: answered 200.)"""
        e = prm.e
        if self.leg is None or e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        ts = e.body.tsxState
        tsx = ts.tsx
        if (
            tsx.role != pj.PJSIP_ROLE_UAS
            or tsx.state != pj.PJSIP_TSX_STATE_TRYING
            or ts.type != pj.PJSIP_EVENT_RX_MSG
        ):
            return
        try:
            key = info_key(parse(ts.src.rdata.wholeMsg.encode()))
        except SipParseError:
            return
        if key is not None:
            self.endpoint.post(self.leg.dtmf.put_nowait, key)


class SipLeg(BridgedLeg):
    """The asyncio side of a SIP call."""

    def __init__(self, info: CallInfo, bridge: FrameBridge, endpoint: SipHost, pj_call_id: int) -> None:
        super().__init__(info, bridge)
        self._endpoint = endpoint
        self._pj_call_id = pj_call_id
        self.failed: Callable[[int, str], None] | None = None  # an outgoing call's unanswered end

    def set_media(self, codec: str, remote: str) -> None:
        if self.info.codec != codec:
            log.info("media", call_id=self.info.call_id, codec=codec, remote_media=remote)
        self.info.codec = codec
        self.info.remote_media = remote

    async def _request_hangup(self) -> None:
        await self._endpoint.hangup(self._pj_call_id)

    async def send_dtmf(self, digits: str) -> bool:
        return await self._endpoint.send_dtmf(self._pj_call_id, digits)

    async def connect(self, other: object) -> bool:
        """Bridge in pjsua's conference (see `CallLeg.connect`): only two calls of one endpoint."""
        if not isinstance(other, SipLeg) or other._endpoint is not self._endpoint:
            return False
        return await self._endpoint.connect(self._pj_call_id, other._pj_call_id)

    async def transfer(self, uri: str) -> bool:
        """Blind transfer (REFER); True once the caller reports the new call answered."""
        code = await self._endpoint.transfer(self._pj_call_id, uri)
        log.info("transfer result", call_id=self.info.call_id, uri=uri, code=code)
        return 200 <= code < 300


def place_call(
    endpoint: SipHost, account: pj.Account, uri: str, bridge: FrameBridge
) -> tuple[SipCall, SipLeg]:
    """pjsip thread: an outgoing audio call to `uri` (its INVITE sent) and its leg."""
    call = SipCall(endpoint, account)
    prm = pj.CallOpParam(True)
    prm.opt.audioCount, prm.opt.videoCount = 1, 0
    call.makeCall(uri, prm)
    ci = call.getInfo()
    leg = SipLeg(CallInfo(ci.callIdString, "sip", ci.localUri, ci.remoteUri, uri_user(uri)), bridge, endpoint,
                 call.getId())  # fmt: skip
    call.leg = leg
    return call, leg
