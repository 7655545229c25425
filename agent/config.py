"""Typed configuration, validated once at start-up (see config.yaml for every field)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.engines.models import default_cache_dir
from agent.yamlconf import load_model


class _Section(BaseModel):
    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelsConfig(_Section):
    cache_dir: Path = Field(default_factory=default_cache_dir)

    @field_validator("cache_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class VADConfig(_Section):
    engine: Literal["silero", "webrtc"] = "silero"
    model: str = "silero"
    webrtc_aggressiveness: int = Field(2, ge=0, le=3)
    threads: int = Field(1, ge=1, le=16)


class STTConfig(_Section):
    model: str = "tiny.en"  # tiny.en | base | path to a CTranslate2 Whisper folder
    cpu_threads: int = Field(2, ge=1, le=64)
    beam_size: int = Field(1, ge=1, le=10)
    language: str = "en"
    compression_ratio_threshold: float = Field(2.4, gt=0)
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    log_prob_threshold: float = -1.0


class LLMConfig(_Section):
    model: str = "qwen2.5-coder-0.5b"  # qwen2.5-coder-0.5b | qwen2.5-coder-1.5b | path to a .gguf
    n_ctx: int = Field(2048, ge=256, le=32768)
    n_threads: int = Field(2, ge=1, le=64)
    n_batch: int = Field(256, ge=8, le=4096)
    max_tokens: int = Field(120, ge=1, le=4096)
    temperature: float = Field(0.3, ge=0, le=2)
    timeout_s: float = Field(8.0, gt=0)
    prefix_cache_mb: int = Field(0, ge=0)


class TTSConfig(_Section):
    voice: str = "joe"  # joe | path to a Piper .onnx (with .onnx.json beside it)
    threads: int = Field(1, ge=1, le=16)
    length_scale: float | None = Field(None, gt=0)
    volume: float = Field(0.8, gt=0, le=1)


class RegistrationConfig(_Section):
    """Outbound REGISTER to a registrar / SIP trunk."""

    registrar: str = Field(pattern=r"^sips?:")  # e.g. sip:pbx.example.com:5060
    aor: str = Field(pattern=r"^sips?:")  # address of record, e.g. sip:agent@pbx.example.com
    username: str = ""
    password: str = ""
    realm: str = "*"
    expires_s: int = Field(300, ge=30, le=86400)
    retry_s: int = Field(30, ge=5, le=3600)  # wait after a failed registration


class SipLimitsConfig(_Section):
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
        return _check_cidrs(v)


SCANNERS = ["friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iwar", "vaxsipuseragent",
            "pplsip", "smap"]  # fmt: skip


class SipAuthConfig(_Section):
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


class SipAccessConfig(_Section):
    """Who may call. Checked by the agent, and (with `sip.edge`) by Kamailio before it."""

    allow: list[str] = Field(default_factory=list)  # CIDRs that may place calls; []: anyone
    outsiders: Literal["reject", "drop"] = "reject"  # callers outside `allow`: 403, or (edge) no answer
    # User-Agent substrings (any case) of SIP scanners: never answered at the edge, 403 behind it.
    scanner_agents: list[str] = Field(default_factory=lambda: list(SCANNERS))
    auth: SipAuthConfig | None = None  # digest-authenticate every INVITE (edge only)

    @field_validator("allow")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        return _check_cidrs(v)


def _check_cidrs(v: list[str]) -> list[str]:
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not an address or CIDR like 192.0.2.0/24") from None
    return v


def _readable(v: Path | None) -> Path | None:
    if v is not None and not v.expanduser().is_file():
        raise ValueError(f"{v}: no such file")
    return v.expanduser() if v is not None else None


class TlsFiles(_Section):
    """A server's certificate (chain) and private key: PEM files, paths relative to the
    working directory."""

    cert: Path
    key: Path

    _files = field_validator("cert", "key")(_readable)


class SipTlsConfig(TlsFiles):
    """SIP over TLS on its own port (callers dial `sip:x@host:port;transport=tls` or `sips:`)."""

    port: int = Field(5061, ge=0, le=65535)  # 0: any free port
    ca: Path | None = None  # CAs that peers' certificates must chain to (mutual TLS, our own calls)
    verify_client: bool = False  # demand and check a client certificate (needs `ca`)

    _ca = field_validator("ca")(_readable)

    @model_validator(mode="after")
    def _client_check_needs_ca(self) -> SipTlsConfig:
        if self.verify_client and self.ca is None:
            raise ValueError("verify_client needs `ca` (the CAs client certificates chain to)")
        return self


class SipConfig(_Section):
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


class HttpConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"  # health, readiness, metrics, the WebRTC widget and its signaling
    port: int = Field(8080, ge=0, le=65535)
    # Against connection floods and slowloris: each source's open connections are capped, and a
    # connection that has not sent its first request's headers within header_timeout_s is closed.
    max_connections_per_source: int = Field(64, ge=1, le=100000)
    header_timeout_s: float = Field(10.0, gt=0, le=300)
    keepalive_timeout_s: float = Field(15.0, gt=0, le=3600)
    # HTTPS (browsers open the microphone only on secure pages); or a TLS proxy in front.
    tls: TlsFiles | None = None


class WebRtcConfig(_Section):
    """Calls from web pages: the widget POSTs an SDP offer to the HTTP server (needs http)."""

    enabled: bool = True
    to_user: str = Field("web", pattern=r"^[A-Za-z0-9_.+-]{1,64}$")  # routed like a SIP user
    ice_addresses: list[str] = Field(default_factory=lambda: ["127.0.0.1"])  # host candidates; []: all
    cors_origins: list[str] = Field(default_factory=list)  # other sites that may embed; []: same origin
    max_offer_bytes: int = Field(32768, ge=1024, le=1048576)
    connect_timeout_s: float = Field(15.0, gt=0, le=120)
    # Only offers carrying a token (POST /v1/webrtc/token, minted by the site's backend with a
    # calls:write key, or an HS256 JWT it signs with `token_secret`: aud "webrtc", exp) are taken.
    require_token: bool = False
    token_secret: str | None = Field(None, min_length=32)
    token_ttl_s: float = Field(120.0, gt=0, le=3600)

    @model_validator(mode="after")
    def _token_needs_secret(self) -> WebRtcConfig:
        if self.require_token and not self.token_secret:
            raise ValueError("require_token needs a token_secret (32 characters or more)")
        return self

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        for o in v:
            if o != "*" and not re.fullmatch(r"https?://[^/\s]+", o):
                raise ValueError(f"{o!r} is not an origin like https://example.com (scheme://host[:port])")
        return v


WEBHOOK_EVENTS = (
    "call.started", "call.ringing", "call.answered", "call.transferred", "call.ended", "recording.ready",
)  # fmt: skip
WebhookEvent = Literal[
    "call.started", "call.ringing", "call.answered", "call.transferred", "call.ended", "recording.ready"
]
SCOPES = ("calls:read", "calls:write", "speech")
Scope = Literal["calls:read", "calls:write", "speech"]


class StoreConfig(_Section):
    """Where call records, the webhook outbox (one SQLite file) and recordings live. Cluster
    workers share them: SQLite in WAL mode takes several writer processes on one machine."""

    dir: Path = Path("var")  # relative to the working directory
    retention_check_s: float = Field(3600.0, ge=1)  # how often expired recordings are deleted

    @field_validator("dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def db_path(self) -> Path:
        return self.dir / "calls.db"

    @property
    def recordings_dir(self) -> Path:
        return self.dir / "recordings"


class WebhookConfig(_Section):
    """One receiver of call events; each request is signed with `secret` (see docs/webhooks.md)."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    secret: str = Field(min_length=16)
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))  # type: ignore[arg-type]
    timeout_s: float = Field(5.0, gt=0, le=60)  # per attempt
    retry_for_h: float = Field(24.0, gt=0, le=168)  # then the event is given up (and counted)


class ApiKeyConfig(_Section):
    """An HTTP API key, stored as the SHA-256 hex of the key (`voice-agent keys create`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)


class ApiConfig(_Section):
    # Keys here, and those of `voice-agent keys create` (kept in the store): none at all and
    # the /v1 API answers 401 to every request.
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    requests_per_minute: float = Field(600.0, gt=0, le=600000)  # per key, every /v1 route (429 past it)
    # HS256 JWTs signed with this secret are accepted as keys too (claims: exp required,
    # `scope` space-separated, `sub` names it); for sites that already issue tokens.
    jwt_secret: str | None = Field(None, min_length=32)


class OutboundConfig(_Section):
    """Outgoing calls (POST /v1/calls, `voice-agent call`)."""

    max_concurrent: int = Field(2, ge=1, le=64)  # of this process's calls, placed at once
    calls_per_minute: float = Field(10.0, gt=0, le=6000)  # per API key (429 past it)
    ring_timeout_s: float = Field(30.0, gt=0, le=300)  # unanswered by then: "no answer"


class DialplansConfig(_Section):
    dir: Path = Path("dialplans")  # one YAML per dialplan; relative to the working directory

    @field_validator("dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class EngineGuardConfig(_Section):
    """Per-engine circuit breakers (agent/engines/breaker.py) and the STT/TTS deadlines."""

    failures: int = Field(3, ge=1, le=100)  # failures or timeouts within window_s open the breaker
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(10.0, gt=0)  # open this long, then one probe call
    stt_timeout_s: float = Field(10.0, gt=0)
    tts_timeout_s: float = Field(10.0, gt=0)


class FaultConfig(_Section):
    """Test-only fault injection (agent/engines/faults.py); never set in production."""

    engine: Literal["stt", "llm", "tts", "vad"]
    mode: Literal["fail", "hang", "slow"]
    calls: list[int] = Field(default_factory=list)  # 1-based calls of that engine; []: every call
    seconds: float = Field(30.0, ge=0, le=3600)  # how long hang/slow block


class Config(_Section):
    models: ModelsConfig = ModelsConfig()
    vad: VADConfig = VADConfig()
    stt: STTConfig = STTConfig()
    llm: LLMConfig = LLMConfig()
    tts: TTSConfig = TTSConfig()
    sip: SipConfig = SipConfig()
    http: HttpConfig = HttpConfig()
    webrtc: WebRtcConfig = WebRtcConfig()
    dialplans: DialplansConfig = DialplansConfig()
    log: LogConfig = LogConfig()
    engines: EngineGuardConfig = EngineGuardConfig()
    store: StoreConfig = StoreConfig()
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    api: ApiConfig = ApiConfig()
    outbound: OutboundConfig = OutboundConfig()
    faults: list[FaultConfig] = Field(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _empty_section(cls, v: object) -> object:
        return {} if v is None else v  # a section with only comments in it

    @field_validator("webhooks")
    @classmethod
    def _one_entry_per_url(cls, v: list[WebhookConfig]) -> list[WebhookConfig]:
        urls = [w.url for w in v]  # the outbox knows a receiver by its URL (and signs with its secret)
        if dup := sorted({u for u in urls if urls.count(u) > 1}):
            raise ValueError(f"one entry per URL (list all its events there): {', '.join(dup)}")
        return v


def load_config(path: Path | None) -> Config:
    """Load and validate a config file; None gives the defaults."""
    if path is None:
        return Config()
    return load_model(Config, path)
