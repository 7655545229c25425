"""The pjsua2 account: our identity, optional REGISTER with digest auth, incoming calls."""

from __future__ import annotations

import pjsua2 as pj
import structlog

from agent.sipconfig import SipConfig
from agent.telephony.pjhost import SipHost, guarded

log = structlog.get_logger("sip")


class SipAccount(pj.Account):
    """Receives INVITEs for the endpoint; tracks registration (pjsua refreshes and retries)."""

    def __init__(self, endpoint: SipHost) -> None:
        super().__init__()
        self._endpoint = endpoint
        self.registered = False

    @guarded
    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self._endpoint.on_incoming(self, prm)

    @guarded
    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        info = self.getInfo()
        self.registered = bool(info.regIsActive)
        event = "registered" if self.registered else "not registered"
        level = log.info if prm.code // 100 == 2 else log.warning
        level(event, code=prm.code, reason=prm.reason, expires_s=info.regExpiresSec, uri=info.uri)


def account_config(cfg: SipConfig, addresses: list[str]) -> pj.AccountConfig:
    """Identity, registration and media transport settings from the config."""
    ac = pj.AccountConfig()
    reg = cfg.registration
    if reg is not None:
        ac.idUri = reg.aor
        ac.regConfig.registrarUri = reg.registrar
        ac.regConfig.timeoutSec = reg.expires_s
        ac.regConfig.retryIntervalSec = reg.retry_s
        ac.regConfig.firstRetryIntervalSec = min(reg.retry_s, 5)
        ac.regConfig.registerOnAdd = True
        if reg.username:
            ac.sipConfig.authCreds.append(pj.AuthCredInfo("digest", reg.realm, reg.username, 0, reg.password))
    else:
        # With no registrar, calls reach us directly: sip:<anything>@host:port.
        local = addresses[0].split(":", 1)[1] if addresses else f"{cfg.host}:{cfg.port}"
        host = f"{cfg.public_address}:{local.rsplit(':', 1)[1]}" if cfg.public_address else local
        ac.idUri = f"sip:agent@{host}"
    if cfg.contact:
        ac.sipConfig.contactForced = cfg.contact
    if cfg.outbound_proxy:
        ac.sipConfig.proxies.append(cfg.outbound_proxy)
    mt = ac.mediaConfig.transportConfig
    mt.port = cfg.rtp_port
    mt.portRange = cfg.rtp_port_range
    media_host = cfg.media_host or cfg.host
    if media_host not in ("0.0.0.0", "::"):
        mt.boundAddress = media_host
    if cfg.public_address:
        mt.publicAddress = cfg.public_address
    ac.mediaConfig.srtpUse = SRTP[cfg.srtp]
    ac.mediaConfig.srtpSecureSignaling = 0  # SDES over UDP too (the config says to pair it with TLS)
    return ac


SRTP = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}
