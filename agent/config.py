"""Typed configuration, validated once at start-up (see config.yaml for every field)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from agent.configbase import Section, TlsFiles
from agent.engines.models import default_cache_dir
from agent.sipconfig import SipConfig
from agent.yamlconf import load_model


class ModelsConfig(Section):
    cache_dir: Path = Field(default_factory=default_cache_dir)

    @field_validator("cache_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class VADConfig(Section):
    engine: Literal["silero", "webrtc"] = "silero"
    model: str = "silero"
    webrtc_aggressiveness: int = Field(2, ge=0, le=3)
    threads: int = Field(1, ge=1, le=16)


class STTConfig(Section):
    model: str = "tiny.en"  # tiny.en | base | path to a CTranslate2 Whisper folder
    cpu_threads: int = Field(2, ge=1, le=64)
    beam_size: int = Field(1, ge=1, le=10)
    language: str = "en"
    compression_ratio_threshold: float = Field(2.4, gt=0)
    no_speech_threshold: float = Field(0.6, ge=0, le=1)
    log_prob_threshold: float = -1.0


class LLMConfig(Section):
    model: str = "qwen2.5-coder-0.5b"  # qwen2.5-coder-0.5b | qwen2.5-coder-1.5b | path to a .gguf
    n_ctx: int = Field(2048, ge=256, le=32768)
    n_threads: int = Field(2, ge=1, le=64)
    n_batch: int = Field(256, ge=8, le=4096)
    max_tokens: int = Field(120, ge=1, le=4096)
    temperature: float = Field(0.3, ge=0, le=2)
    timeout_s: float = Field(8.0, gt=0)
    prefix_cache_mb: int = Field(0, ge=0)


class TTSConfig(Section):
    voice: str = "joe"  # joe | path to a Piper .onnx (with .onnx.json beside it)
    threads: int = Field(1, ge=1, le=16)
    length_scale: float | None = Field(None, gt=0)
    volume: float = Field(0.8, gt=0, le=1)


class HttpConfig(Section):
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


class WebRtcConfig(Section):
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


class StoreConfig(Section):
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


class WebhookConfig(Section):
    """One receiver of call events; each request is signed with `secret` (see docs/webhooks.md)."""

    url: str = Field(pattern=r"^https?://[^\s/]+")
    secret: str = Field(min_length=16)
    events: list[WebhookEvent] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))  # type: ignore[arg-type]
    timeout_s: float = Field(5.0, gt=0, le=60)  # per attempt
    retry_for_h: float = Field(24.0, gt=0, le=168)  # then the event is given up (and counted)


class ApiKeyConfig(Section):
    """An HTTP API key, stored as the SHA-256 hex of the key (`voice-agent keys create`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Scope] = Field(min_length=1)


class ApiConfig(Section):
    # Keys here, and those of `voice-agent keys create` (kept in the store): none at all and
    # the /v1 API answers 401 to every request.
    keys: list[ApiKeyConfig] = Field(default_factory=list)
    requests_per_minute: float = Field(600.0, gt=0, le=600000)  # per key, every /v1 route (429 past it)
    # HS256 JWTs signed with this secret are accepted as keys too (claims: exp required,
    # `scope` space-separated, `sub` names it); for sites that already issue tokens.
    jwt_secret: str | None = Field(None, min_length=32)


class OutboundConfig(Section):
    """Outgoing calls (POST /v1/calls, `voice-agent call`)."""

    max_concurrent: int = Field(2, ge=1, le=64)  # of this process's calls, placed at once
    calls_per_minute: float = Field(10.0, gt=0, le=6000)  # per API key (429 past it)
    ring_timeout_s: float = Field(30.0, gt=0, le=300)  # unanswered by then: "no answer"


class DialplansConfig(Section):
    dir: Path = Path("dialplans")  # one YAML per dialplan; relative to the working directory

    @field_validator("dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()


class LogConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class EngineGuardConfig(Section):
    """Per-engine circuit breakers (agent/engines/breaker.py) and the STT/TTS deadlines."""

    failures: int = Field(3, ge=1, le=100)  # failures or timeouts within window_s open the breaker
    window_s: float = Field(30.0, gt=0)
    cooldown_s: float = Field(10.0, gt=0)  # open this long, then one probe call
    stt_timeout_s: float = Field(10.0, gt=0)
    tts_timeout_s: float = Field(10.0, gt=0)


class FaultConfig(Section):
    """Test-only fault injection (agent/engines/faults.py); never set in production."""

    engine: Literal["stt", "llm", "tts", "vad"]
    mode: Literal["fail", "hang", "slow"]
    calls: list[int] = Field(default_factory=list)  # 1-based calls of that engine; []: every call
    seconds: float = Field(30.0, ge=0, le=3600)  # how long hang/slow block


class Config(Section):
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
