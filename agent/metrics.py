"""Prometheus metrics of one agent process, in a registry of its own (no hidden globals).

Transports and sessions get this object and record into it; `GET /metrics` renders it.
prometheus-client metrics are thread-safe, so the pjsip thread may record directly.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CALL_RESULTS = (
    "answered",
    "rejected_busy",
    "rejected_not_found",
    "rejected_rate",
    "rejected_forbidden",
    "failed",
    "transferred",
)
# The intervals of a turn's timing record (filled by the call session).
TURN_INTERVALS = (
    "end_of_turn",
    "stt",
    "llm_first_token",
    "tts_first_chunk",
    "voice_to_voice",
    "voice_to_answer",
    "barge_in_stop",
)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.calls_active = Gauge("voice_agent_calls_active", "Calls in progress.", ["transport"], registry=r)
        self.calls = Counter(
            "voice_agent_calls", "Calls by how they were handled.", ["transport", "result"], registry=r
        )
        self.call_duration = Histogram(
            "voice_agent_call_duration_seconds",
            "Duration of answered calls.",
            ["transport"],
            registry=r,
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
        )
        self.turn_interval = Histogram(
            "voice_agent_turn_interval_seconds",
            "Intervals of each turn's timing record.",
            ["interval"],
            registry=r,
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
        )
        self.barge_ins = Counter("voice_agent_barge_ins", "Caller interruptions of agent speech.", registry=r)
        self.engine_errors = Counter(
            "voice_agent_engine_errors", "Engine failures and timeouts.", ["engine", "kind"], registry=r
        )
        self.engine_breaker = Gauge(
            "voice_agent_engine_breaker_state",
            "Circuit breaker per engine: 0 closed, 1 half-open (probing), 2 open (not called).",
            ["engine"],
            registry=r,
        )
        self.engine_queue = Gauge(
            "voice_agent_engine_queue_depth", "Jobs waiting or running per engine.", ["engine"], registry=r
        )
        self.inbound_frames_dropped = Counter(
            "voice_agent_inbound_frames_dropped",
            "Caller frames dropped because the call lagged.",
            ["transport"],
            registry=r,
        )
        self.frame_jitter = Histogram(
            "voice_agent_frame_jitter_seconds",
            "Per call: std. deviation of the 20 ms frame clock.",
            ["direction"],
            registry=r,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05),
        )
        self.rtp_packets = Counter(
            "voice_agent_rtp_packets", "RTP packets per call stream, by direction.", ["direction"], registry=r
        )
        self.rtp_lost = Counter(
            "voice_agent_rtp_packets_lost", "RTP packets lost (received direction).", registry=r
        )
        self.rtp_jitter = Histogram(
            "voice_agent_rtp_jitter_seconds",
            "Per call: mean RTP interarrival jitter (RFC 3550).",
            registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
        )
        self.jitter_buffer_delay = Histogram(
            "voice_agent_jitter_buffer_delay_seconds",
            "Per call: mean jitter-buffer delay.",
            registry=r,
            buckets=(0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3),
        )
        self.jitter_buffer_discarded = Counter(
            "voice_agent_jitter_buffer_discarded_frames", "Frames the jitter buffer discarded.", registry=r
        )
        self.call_results = Counter(
            "voice_agent_call_results",
            "Answered calls by how they ended (the call record's result).",
            ["result"],
            registry=r,
        )
        self.transfers = Counter(
            "voice_agent_transfers", "Transfers tried, by mode and outcome.", ["mode", "outcome"], registry=r
        )
        self.http_closed = Counter(
            "voice_agent_http_connections_closed",
            "HTTP connections the guard closed: too_many (from one source), slow_headers.",
            ["reason"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "voice_agent_webhook_deliveries",
            "Webhook delivery attempts by result (delivered, retry, rejected, expired).",
            ["result"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "voice_agent_webhook_delivery_seconds",
            "From an event being recorded to its receiver's 2xx.",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120, 600, 3600, 86400),
        )
        self.webhook_pending = Gauge(
            "voice_agent_webhook_pending", "Webhook events waiting for delivery (the outbox).", registry=r
        )
        self.webhook_oldest_age = Gauge(
            "voice_agent_webhook_oldest_pending_seconds",
            "Age of the oldest undelivered webhook event.",
            registry=r,
        )
        self.recordings = Counter(
            "voice_agent_recordings",
            "Call recordings by result (written, repaired, expired).",
            ["result"],
            registry=r,
        )
        self.ready = Gauge("voice_agent_ready", "1 when models are loaded and transports are up.", registry=r)
        for result in CALL_RESULTS:  # every series exists from the start, at 0
            self.calls.labels("sip", result)
        for interval in TURN_INTERVALS:
            self.turn_interval.labels(interval)
        self.calls_active.labels("sip").set(0)

    def watch_breaker(self, engine: str, state: Callable[[], float]) -> None:
        """Export an engine's circuit breaker state (0 closed, 1 half-open, 2 open) at scrape time."""
        self.engine_breaker.labels(engine).set_function(state)

    def watch_queue(self, engine: str, depth: Callable[[], float]) -> None:
        """Export an engine worker's queue depth, read at scrape time."""
        self.engine_queue.labels(engine).set_function(depth)

    def watch_outbox(self, depth: Callable[[], float], oldest_age_s: Callable[[], float]) -> None:
        """Export the webhook outbox's backlog, read at scrape time."""
        self.webhook_pending.set_function(depth)
        self.webhook_oldest_age.set_function(oldest_age_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
