"""The speech endpoints through the real server (`voice-agent serve`, real models): recorded
speech in five formats, bad uploads of every kind (a clear 4xx, never a 500, the process
unharmed), TTS that Whisper reads back, keys and scopes; and the OpenAPI document, validated and
matched against every route the server registers."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from agent.api.keys import hash_key
from agent.audio.decode import decode_audio, encode_audio
from agent.wer import wer
from tests.test_records_real import http_port
from tests.test_sip import serve
from tests.test_store import cli

pytestmark = [pytest.mark.models]
KEY, READER = "va_speech-test-key-0123456789", "va_reader-test-key-0123456789"


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("speech")
    cfg = (
        "sip:\n  enabled: false\napi:\n  keys:\n"
        f"    - name: app\n      sha256: {hash_key(KEY)}\n      scopes: [speech]\n"
        f"    - name: crm\n      sha256: {hash_key(READER)}\n      scopes: [calls:read]\n"
    )
    proc, events = serve(tmp, cfg)
    port = http_port(events)
    port_configs[port] = tmp / "c.yaml"  # the running agent's config: its store
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)


port_configs: dict[int, Path] = {}


def call(port: int, path: str, body: bytes | None = None, key: str | None = KEY,
         ctype: str = "application/octet-stream") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method="POST" if body is not None else "GET"
    )
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def encode(pcm: np.ndarray, fmt: str) -> bytes:
    """16 kHz mono int16 as a file of `fmt` (the codecs a browser or phone app would send)."""
    return encode_audio(pcm, 16000, fmt)


def test_recorded_speech_in_five_formats_is_transcribed(port, speech_dir, manifest):
    row = next(r for r in manifest if r["path"].endswith("austen_64kb-0870.wav"))
    pcm = decode_audio((speech_dir / row["path"]).read_bytes())
    for fmt in ("wav", "flac", "mp3", "ogg", "webm"):
        status, _, body = call(port, "/v1/stt", encode(pcm, fmt))
        assert status == 200, (fmt, body)
        answer = json.loads(body)  # strict JSON: no NaN or Infinity
        assert wer(row["transcript"], answer["text"]) <= 0.25, (fmt, answer["text"])
        assert abs(answer["duration_s"] - float(row["duration_s"])) < 0.3 and answer["segments"], answer
    boundary = uuid.uuid4().hex
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.flac"\r\n'
            f"Content-Type: audio/flac\r\n\r\n"
        ).encode()
        + encode(pcm, "flac")
        + f"\r\n--{boundary}--\r\n".encode()
    )
    status, _, body = call(port, "/v1/stt", form, ctype=f"multipart/form-data; boundary={boundary}")
    assert status == 200 and wer(row["transcript"], json.loads(body)["text"]) <= 0.25, body


def test_bad_uploads_get_a_clear_4xx_and_the_server_carries_on(port, speech_dir):
    good = (speech_dir / "digits/0_george_0.wav").read_bytes()
    cases = {
        "empty": (b"", 400),
        "garbage": (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), 415),
        "text": (b"hello, this is not audio" * 50, 415),
        "truncated": (good[:60], 400),
        "silent": (encode(np.zeros(16000, np.int16), "wav"), 400),
        "huge": (b"\0" * (21 * 1024 * 1024), 413),
    }
    for name, (data, want) in cases.items():
        status, _, body = call(port, "/v1/stt", data)
        assert status == want and json.loads(body)["error"], (name, status, body)
    for ctype in ("multipart/form-data", "multipart/form-data; boundary=x"):  # no or a wrong boundary
        status, _, body = call(port, "/v1/stt", b"--y\r\ngarbage", ctype=ctype)
        assert status == 400, (ctype, status, body)
    half = encode(decode_audio(good), "mp3")
    status, _, _ = call(port, "/v1/stt", half[: len(half) // 2])  # cut mid-stream: what decoded, or a 400
    assert status in (200, 400)
    assert call(port, "/healthz", key=None)[0] == 200


def test_a_key_made_by_the_cli_works_at_once_and_a_revoked_one_stops_at_once(port):
    cfg = str(port_configs[port])
    made = cli("keys", "create", "--name", "app2", "--scope", "speech", "--config", cfg)
    key = made.stdout.split("keep it secret): ")[1].split()[0]
    assert call(port, "/v1/voices", key=key)[0] == 200
    assert cli("keys", "revoke", "--name", "app2", "--config", cfg).returncode == 0
    assert call(port, "/v1/voices", key=key)[0] == 401


def test_keys_and_scopes_guard_the_speech_endpoints(port):
    assert call(port, "/v1/voices", key=None)[0] == 401
    assert call(port, "/v1/voices", key=READER)[0] == 403
    status, _, body = call(port, "/v1/voices")
    assert status == 200 and json.loads(body)["voices"][0]["name"]
    assert json.loads(call(port, "/v1/models")[2])["models"]["stt"]


@pytest.mark.parametrize("fmt", ["wav", "ogg", "stream"])
def test_tts_audio_reads_back_as_its_text(port, stt, fmt):
    text = "Your bicycle is ready. We close at six tonight."
    body = {"text": text, "format": "wav" if fmt == "stream" else fmt, "stream": fmt == "stream"}
    status, headers, audio = call(port, "/v1/tts", json.dumps(body).encode(), ctype="application/json")
    assert status == 200, audio
    if fmt != "stream":
        assert float(headers["X-Duration"]) > 1.5 and float(headers["X-Latency"]) > 0
    pcm = decode_audio(audio)
    assert wer(text, stt.transcribe(pcm).text) <= 0.2
    bad = call(
        port, "/v1/tts", json.dumps({"text": text, "voice": "nobody"}).encode(), ctype="application/json"
    )
    assert bad[0] == 400


def test_the_openapi_document_is_valid_and_covers_every_route(port, tmp_path):
    from openapi_spec_validator import validate

    from agent.config import Config
    from agent.server import Server

    status, _, body = call(port, "/openapi.json", key=None)
    doc = json.loads(body)
    assert status == 200
    validate(doc)
    page = call(port, "/docs", key=None)
    assert page[0] == 200 and "/v1/stt" in page[2].decode() and "speech" in page[2].decode()
    cfg = Config.model_validate({
        "store": {"dir": str(tmp_path)}, "dialplans": {"dir": "dialplans"},
        "webrtc": {"require_token": True, "token_secret": "s" * 32},  # every route there is
    })  # fmt: skip
    server = Server(cfg)
    assert server.http is not None
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in server.http.app.router.routes()
        if r.resource is not None and r.method != "HEAD" and not r.resource.canonical.startswith("/widget")
        and r.resource.canonical != "/"
    }  # fmt: skip
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented, routes ^ documented
    server.store.db.close()
