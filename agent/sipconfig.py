"""The `sip:` section: listeners, limits, access, registration, TLS and SRTP."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from agent.configbase import Section, TlsFiles, check_cidrs, readable


class RegistrationConfig(Section):
    """Outbound REGISTER to a registrar / SIP trunk."""

    registrar: str = Field(pattern=r"^sips?:")  # e.g. sip:pbx.example.com:5060
    aor: str = Field(pattern=r"^sips?:")  # address of record, e.g. sip:agent@pbx.example.com
    username: str = ""
    password: str = ""
    realm: str = "*"
    expires_s: int = Field(300, ge=30, le=86400)
    retry_s: int = Field(30, ge=5, le=3600)  # wait after a failed registration


class SipLimitsConfig(Section):
    """How fast new calls are taken (see agent/telephony/admission.py for why this also keeps
    pjsip alive under an INVITE flood)."""

    calls_per_s: float = Field(8.0, gt=0, le=100)  # new calls answered, all sources together
    burst: int = Field(8, ge=1, le=100)
    per_source_calls_per_s: float = Field(2.0, gt=0, le=100)  # from one IP address
    per_source_burst: int = Field(6, ge=1, le=100)
    trusted: list[str] = Field(default_factory=list)  # CIDRs without a per-source limit (a PBX, the front)
    reject_hold_ms: int = Field(500, ge=100, le=5000)  # a rejected INVITE keeps its slot this long
    requests_per_s: float = Field(20.0, gt=0, le=10000)  # any request from one IP, at the Kamailio edge
    # Calls in progress from one IP (a caller that never hangs up cannot take every line);
    # checked by the edge and the agent. List a PBX or trunk that carries many calls in
    # `trusted`. 0: no limit.
    calls_per_source: int = Field(2, ge=0, le=1000)

    @field_validator("trusted")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return check_cidrs(v)


SCANNERS = ["friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iwar", "vaxsipuseragent",
            "pplsip", "smap"]  # fmt: skip


class SipAuthConfig(Section):
    """Digest authentication of inbound INVITEs, at the Kamailio edge (needs `sip.edge`)."""

    realm: str = Field("voice-agent", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    # user -> HA1, the MD5 hex of "user:realm:password" (e.g. `printf 'alice:voice-agent:secret' |
    # md5sum`): no password is stored in the config.
    users: dict[str, str] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _ha1(cls, v: dict[str, str]) -> dict[str, str]:
        for user, ha1 in v.items():
            if not re.fullmatch(r"[A-Za-z0-9_.+-]{1,64}", user):
                raise ValueError(f"user {user!r}: letters, digits and _.+- only")
            if not re.fullmatch(r"[0-9a-f]{32}", ha1):
                raise ValueError(f"user {user!r}: the value is the 32-hex-digit MD5 of 'user:realm:password'")
        return v


class TrunkConfig(Section):
    """A carrier or PBX that sends calls, known by its addresses. A dialplan that names trunks
    in `access.trunks` is reached only from them."""

    allow: list[str] = Field(min_length=1)  # its CIDRs

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return check_cidrs(v)


class SipAccessConfig(Section):
    """Who may call. Checked by the agent, and (with `sip.edge`) by Kamailio before it."""

    allow: list[str] = Field(default_factory=list)  # CIDRs that may place calls; []: anyone
    outsiders: Literal["reject", "drop"] = "reject"  # callers outside `allow`: 403, or (edge) no answer
    # User-Agent substrings (any case) of SIP scanners: never answered at the edge, 403 behind it.
    scanner_agents: list[str] = Field(default_factory=lambda: list(SCANNERS))
    auth: SipAuthConfig | None = None  # digest-authenticate every INVITE (edge only)

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return check_cidrs(v)


class SipTlsConfig(TlsFiles):
    """SIP over TLS on its own port (callers dial `sip:x@host:port;transport=tls` or `sips:`)."""

    port: int = Field(5061, ge=0, le=65535)  # 0: any free port
    ca: Path | None = None  # CAs that peers' certificates must chain to (mutual TLS, our own calls)
    verify_client: bool = False  # demand and check a client certificate (needs `ca`)

    _ca = field_validator("ca")(readable)

    @model_validator(mode="after")
    def _client_check_needs_ca(self) -> SipTlsConfig:
        if self.verify_client and self.ca is None:
            raise ValueError("verify_client needs `ca` (the CAs client certificates chain to)")
        return self


class SipConfig(Section):
    enabled: bool = True
    host: str = "0.0.0.0"  # bind address
    port: int = Field(5060, ge=0, le=65535)  # 0: any free port
    transports: list[Literal["udp", "tcp"]] = Field(default_factory=lambda: ["udp", "tcp"], min_length=1)  # type: ignore[arg-type]  # pydantic's stub cannot see the literals
    public_address: str | None = None  # advertised in Contact/Via and SDP (NAT, containers)
    rtp_port: int = Field(10000, ge=0, le=65535)  # first RTP port; 0: any
    rtp_port_range: int = Field(1000, ge=0)
    max_calls: int = Field(4, ge=1, le=64)  # SIP + WebRTC; the next INVITE gets 486
    # pjsua answers at most 4 calls per process; above that, Kamailio fronts several workers.
    calls_per_process: int = Field(4, ge=1, le=4)
    worker_port: int = Field(0, ge=0, le=65535)  # first worker SIP port (0: port + 1)
    media_host: str | None = None  # RTP bind address when it differs from `host` (workers)
    contact: str | None = None  # forced Contact URI (a worker registering for the front)
    # Where the agent's own calls (API, warm transfer) go first: an SBC, a trunk's proxy; a
    # cluster worker's is its Kamailio front. "sip:host[:port];lr"
    outbound_proxy: str | None = Field(None, pattern=r"^sips?:[^\s]+$")
    codecs: list[str] = Field(default_factory=lambda: ["G722/16000", "PCMU/8000", "PCMA/8000"], min_length=1)
    user_agent: str = "voice-agent"
    log_level: int = Field(1, ge=0, le=6)  # pjsip's own log level (1 errors .. 5 trace)
    registration: RegistrationConfig | None = None
    limits: SipLimitsConfig = SipLimitsConfig()
    access: SipAccessConfig = SipAccessConfig()
    # Kamailio in front even of one worker: floods, scanners and outsiders stop at the edge
    # (always so above calls_per_process). Recommended on the open internet.
    edge: bool = False
    trunks: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")], TrunkConfig] = Field(
        default_factory=dict
    )
    # A header in which a proxy in front puts the caller's address (an SBC's; cluster workers
    # get their Kamailio front's). Believed only in INVITEs from `limits.trusted` addresses.
    caller_header: str | None = Field(None, pattern=r"^X-[A-Za-z0-9-]+$")
    tls: SipTlsConfig | None = None  # SIP over TLS, ended by the agent itself (not with the edge)
    # SRTP (SDES keys in the SDP: use it with TLS, or the keys travel in clear). optional: offered,
    # and taken when the caller offers it; mandatory: a call without it is refused (488).
    srtp: Literal["off", "optional", "mandatory"] = "off"

    @field_validator("srtp", mode="before")
    @classmethod
    def _yaml_off(cls, v: object) -> object:
        return "off" if v is False else v  # YAML reads a bare `off` as false

    @model_validator(mode="after")
    def _auth_needs_the_edge(self) -> SipConfig:
        fronted = self.edge or self.max_calls > self.calls_per_process
        if self.access.auth is not None and not fronted:
            raise ValueError("access.auth needs edge: true (Kamailio challenges the INVITEs; pjsua cannot)")
        if self.tls is not None and fronted:
            raise ValueError(
                "tls is ended by the agent itself: not with edge: true or max_calls above "
                "calls_per_process (this Kamailio has no TLS module); put a TLS-ending SBC in front"
            )
        return self
