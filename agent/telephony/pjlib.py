"""Starting pjsua2 itself: the library's settings, its transports, codec order, its log.

Runs on the pjsip thread (`telephony/pjthread.py`), called by the SIP endpoint's set-up.
"""

from __future__ import annotations

import pjsua2 as pj
import structlog

from agent.sipconfig import SipConfig
from agent.telephony.pjhost import guarded

log = structlog.get_logger("sip")

_PJ_LEVELS = {0: "error", 1: "error", 2: "warning", 3: "info"}


class LogWriter(pj.LogWriter):
    """pjsip's own log lines into structlog (any pjsip thread)."""

    @guarded
    def write(self, entry: pj.LogEntry) -> None:
        level = _PJ_LEVELS.get(entry.level, "debug")
        getattr(log, level)("pjsip", msg=entry.msg.strip(), thread=entry.threadName)


def start_library(cfg: SipConfig, writer: LogWriter, max_calls: int) -> tuple[pj.Endpoint, list[str]]:
    """A started pjsua2 Endpoint (polled by its thread, 16 kHz bridge, no sound card) and the
    addresses its transports listen on ("udp:127.0.0.1:5060", ...). Raises pj.Error."""
    ep = pj.Endpoint()
    ep.libCreate()
    try:
        ec = pj.EpConfig()
        ec.uaConfig.threadCnt = 0  # we poll: every callback runs on this thread
        ec.uaConfig.mainThreadOnly = False
        ec.uaConfig.maxCalls = max_calls
        ec.uaConfig.userAgent = cfg.user_agent
        ec.logConfig.writer = writer
        ec.logConfig.level = cfg.log_level
        ec.logConfig.consoleLevel = cfg.log_level
        ec.logConfig.decor = 0
        ec.medConfig.clockRate = 16000  # the bridge (and our frames) run at 16 kHz
        ec.medConfig.sndClockRate = 16000
        ec.medConfig.audioFramePtime = 20
        ec.medConfig.ptime = 20
        ec.medConfig.noVad = True  # keep sending RTP through silence
        ec.medConfig.ecTailLen = 0  # no echo canceller: we have no speaker/mic
        ep.libInit(ec)
        addresses = []
        for name in cfg.transports:
            tc = listener(cfg, cfg.port)
            kind = pj.PJSIP_TRANSPORT_UDP if name == "udp" else pj.PJSIP_TRANSPORT_TCP
            tid = ep.transportCreate(kind, tc)
            addresses.append(f"{name}:{ep.transportGetInfo(tid).localName}")
        if cfg.tls is not None:
            tid = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, tls_transport(cfg))
            addresses.append(f"tls:{ep.transportGetInfo(tid).localName}")
        ep.audDevManager().setNullDev()  # no sound card; its clock drives the bridge
        ep.libStart()
        set_codecs(ep, cfg.codecs)
    except pj.Error:
        ep.libDestroy()  # a later start in this process needs a clean library
        raise
    return ep, addresses


def listener(cfg: SipConfig, port: int) -> pj.TransportConfig:
    """A SIP transport on `port` at the configured bind and advertised addresses."""
    tc = pj.TransportConfig()
    tc.port = port
    tc.boundAddress = "" if cfg.host in ("0.0.0.0", "::") else cfg.host
    if cfg.public_address:
        tc.publicAddress = cfg.public_address
    return tc


def tls_transport(cfg: SipConfig) -> pj.TransportConfig:
    """The TLS listener: its port, certificate and key, and whom it trusts."""
    assert cfg.tls is not None
    tc = listener(cfg, cfg.tls.port)
    tls = tc.tlsConfig
    tls.certFile, tls.privKeyFile = str(cfg.tls.cert), str(cfg.tls.key)
    tls.proto = pj.PJ_SSL_SOCK_PROTO_TLS1_2 | pj.PJ_SSL_SOCK_PROTO_TLS1_3  # never SSLv3, TLS 1.0/1.1
    if cfg.tls.ca is not None:
        tls.CaListFile = str(cfg.tls.ca)
        tls.verifyServer = True  # our own calls (transfers, outbound) over TLS
    tls.verifyClient = tls.requireClientCert = cfg.tls.verify_client
    return tc


def set_codecs(ep: pj.Endpoint, codecs: list[str]) -> None:
    """Enable `codecs` in that order of preference; every other codec off."""
    wanted = [c.upper() for c in codecs]
    available = [c.codecId for c in ep.codecEnum2()]
    for codec_id in available:
        rank = next((i for i, w in enumerate(wanted) if codec_id.upper().startswith(w)), None)
        ep.codecSetPriority(codec_id, 0 if rank is None else 255 - rank)
    missing = [w for w in wanted if not any(a.upper().startswith(w) for a in available)]
    if missing:
        log.warning("codecs not available in this pjsip build", codecs=missing, available=available)
