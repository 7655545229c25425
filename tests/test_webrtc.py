"""WebRTC calls: signaling errors and limits, the media path with an aiortc caller (echo dialplan,
no models), and the widget in real Chromium against the real agent (under `unshare -n`)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from agent.config import WebRtcConfig
from agent.metrics import Metrics
from agent.signaling import OFFER_PATH, Signaling
from agent.telephony.echo import echo_handler
from agent.telephony.limits import CallLimiter
from agent.telephony.webrtc import WebRtcGateway, ice_addresses, install_ice_address_hook
from tests.peers import netns_available
from tests.voices import espeak, silence
from tests.webrtc_client import webrtc_call

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "webrtc"


async def with_gateway(test, limiter: CallLimiter | None = None, handler=None, keys=None, **cfg: object):
    """Run `test(base_url, gateway)` against signaling + gateway on 127.0.0.1 (default: echo)."""
    handler = handler or echo_handler(0.2)
    install_ice_address_hook()  # what the server does at start-up
    gateway = WebRtcGateway(WebRtcConfig(**cfg), lambda info: handler, limiter or CallLimiter(4), Metrics())
    gateway.accepting = True
    app = web.Application()
    app.router.add_routes(Signaling(gateway.cfg, gateway, keys).routes())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        return await test(f"http://127.0.0.1:{port}", gateway)
    finally:
        await gateway.stop()
        await runner.cleanup()


async def post(url: str, data: bytes, **headers: str) -> tuple[int, dict, dict]:
    async with aiohttp.ClientSession() as s, s.post(url + OFFER_PATH, data=data, headers=headers) as r:
        return r.status, await r.json(), dict(r.headers)


AUDIO_OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def test_malformed_oversized_and_foreign_offers_are_refused_with_a_reason():
    async def test(url, gateway):
        out = {
            "not json": await post(url, b"{nope"),
            "no sdp": await post(url, json.dumps({"type": "offer"}).encode()),
            "no audio": await post(
                url, json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n"}).encode()
            ),
            "aiortc refuses": await post(url, json.dumps({"type": "offer", "sdp": AUDIO_OFFER}).encode()),
            "bad user": await post(
                url, json.dumps({"type": "offer", "sdp": AUDIO_OFFER, "to": "../x"}).encode()
            ),
            "huge": await post(url, b"x" * 40000),
            "foreign": await post(url, b"{}", Origin="https://evil.example"),
        }
        return out, gateway.legs

    out, legs = asyncio.run(with_gateway(test))
    for name in ("not json", "no sdp", "no audio", "aiortc refuses", "bad user"):
        assert out[name][0] == 400 and out[name][1]["error"], (name, out[name])
    assert "not JSON" in out["not json"][1]["error"] and "audio m= line" in out["no audio"][1]["error"]
    assert out["aiortc refuses"][1]["error"].startswith("unusable SDP offer")
    assert out["huge"][0] == 413 and "32768 bytes" in out["huge"][1]["error"]
    assert out["foreign"][0] == 403 and "cors_origins" in out["foreign"][1]["error"]
    assert legs == {}  # nothing half-made is left behind


def test_a_configured_origin_gets_cors_headers_and_a_full_house_gets_503():
    async def test(url, gateway):
        pre = None
        async with (
            aiohttp.ClientSession() as s,
            s.options(url + OFFER_PATH, headers={"Origin": "https://shop.example"}) as r,
        ):
            pre = (r.status, r.headers.get("Access-Control-Allow-Origin"))
        busy = await post(
            url, json.dumps({"type": "offer", "sdp": AUDIO_OFFER}).encode(), Origin="https://shop.example"
        )
        return pre, busy

    full = CallLimiter(1)
    assert full.try_acquire()  # a SIP call holds the only line
    pre, busy = asyncio.run(with_gateway(test, full, cors_origins=["https://shop.example"]))
    assert pre == (204, "https://shop.example")
    assert (
        busy[0] == 503
        and "busy" in busy[1]["error"]
        and busy[2]["Access-Control-Allow-Origin"] == "https://shop.example"
    )


def test_with_require_token_only_an_offer_with_a_fresh_token_is_taken():
    from agent.api import jwt
    from agent.api.keys import ApiKeys, hash_key
    from agent.config import ApiKeyConfig

    secret = "a-webrtc-token-secret-of-32-chars!!"
    keys = ApiKeys([ApiKeyConfig(name="site", sha256=hash_key("va_site-key"), scopes=["calls:write"])])
    speech = np.concatenate([silence(0.3), espeak("Token please."), silence(1.0)])

    async def test(url, gateway):
        offer = json.dumps({"type": "offer", "sdp": AUDIO_OFFER}).encode()
        out = {"none": await post(url, offer)}
        async with aiohttp.ClientSession() as s:
            async with s.post(url + "/v1/webrtc/token") as r:
                out["mint without key"] = r.status
            async with s.post(url + "/v1/webrtc/token", headers={"X-API-Key": "va_site-key"}) as r:
                token = (await r.json())["token"]
            async with s.post(url + "/v1/webrtc/token?to=sales", headers={"X-API-Key": "va_site-key"}) as r:
                sales = (await r.json())["token"]
        out["other user"] = await post(
            url, json.dumps({"type": "offer", "sdp": AUDIO_OFFER, "token": sales}).encode()
        )
        stale = jwt.encode({"aud": "webrtc", "exp": 1000}, secret.encode())
        out["expired"] = await post(
            url, json.dumps({"type": "offer", "sdp": AUDIO_OFFER, "token": stale}).encode()
        )
        call = await webrtc_call(url, speech, 2.0, token=token)
        again = await webrtc_call(url, speech, 1.0, token=token)
        return out, call, again

    out, call, again = asyncio.run(with_gateway(test, keys=keys, require_token=True, token_secret=secret))
    assert out["none"][0] == 401 and "token" in out["none"][1]["error"]
    assert out["mint without key"] == 401
    assert out["other user"][0] == 401 and out["expired"][0] == 401
    assert call.status == 200, call.error
    assert again.status == 401  # each token is taken once


def test_an_aiortc_caller_hears_itself_through_the_echo_dialplan_and_the_slot_is_freed():
    """Opus 48 kHz in -> 16 kHz session side -> 48 kHz out, paced, over a real peer connection."""
    speech = np.concatenate([silence(0.5), espeak("Testing the web call."), silence(2.0)])
    limiter = CallLimiter(4)

    async def test(url, gateway):
        call = await webrtc_call(url, speech, 5.0)
        for _ in range(50):
            if not gateway.legs:
                break
            await asyncio.sleep(0.1)
        return call, dict(gateway.legs)

    call, legs = asyncio.run(with_gateway(test, limiter))
    assert call.status == 200, call.error
    assert [e for _, e in call.events if e.get("state") == "connected"], call.events
    heard = call.heard_pcm()
    assert len(heard) > 48000 * 3
    # 20 ms frames with speech in them: the echo brings back (nearly) all the caller's
    sent_frames = int((_frame_peaks(speech, 320) > 1000).sum())
    heard_frames = int((_frame_peaks(heard, 960) > 1000).sum())
    assert 0.7 * sent_frames <= heard_frames <= 1.3 * sent_frames, (sent_frames, heard_frames)
    assert legs == {} and limiter.active == 0


def test_when_the_agent_hangs_up_the_page_is_told_and_the_connection_closes():
    async def agent(leg):
        leg.notify({"type": "caption", "who": "agent", "text": "Goodbye!"})
        leg.play(np.full(8000, 3000, np.int16), 16000)
        await asyncio.sleep(1.0)
        await leg.hangup()

    async def test(url, gateway):
        return await webrtc_call(url, silence(1.0), 3.0), dict(gateway.legs)

    call, legs = asyncio.run(with_gateway(test, handler=agent))
    events = [e for _, e in call.events]
    assert {"type": "caption", "who": "agent", "text": "Goodbye!"} in events
    assert events[-1] == {"type": "state", "state": "ended"} and legs == {}


def _frame_peaks(pcm: np.ndarray, n: int) -> np.ndarray:
    return np.abs(pcm[: len(pcm) // n * n].astype(np.int32)).reshape(-1, n).max(axis=1)


@pytest.mark.models
def test_the_widget_in_chromium_calls_the_agent_with_captions_and_audio(tmp_path):
    """The acceptance run: denied microphone, then a call with a question read by a fake mic."""
    from agent.audio.resample import resample
    from agent.audio.wav import write_wav

    mic = tmp_path / "mic.wav"
    question = np.concatenate([silence(6.0), espeak("What time do you open on Saturday?"), silence(25.0)])
    write_wav(mic, resample(question, 16000, 48000), 48000)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(ROOT / "tests/webrtc_browser.py"), str(ARTIFACTS), str(mic)]
    env = {**os.environ}
    if netns_available():
        cmd, env["VOICE_AGENT_NETNS"] = ["unshare", "-n", *cmd], "1"
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((ARTIFACTS / "result.json").read_text())

    denied = result["denied"]
    assert "Microphone access is blocked" in denied["error_text"] and denied["call_button_visible"]
    assert denied["state"] == "idle" and not denied["page_errors"] and not denied["overflows"]

    call = result["call"]
    assert "connected" in call["states"] and call["final_state"] == "ended" and not call["page_errors"]
    captions = call["captions"]
    agent_said = " ".join(c["text"] for c in captions if c["who"] == "agent").lower()
    assert "northside" in agent_said.replace(" ", ""), captions  # the greeting
    caller = [i for i, c in enumerate(captions) if c["who"] == "caller"]
    assert caller and "saturday" in captions[caller[0]]["text"].lower(), captions
    assert any(c["who"] == "agent" for c in captions[caller[0] + 1 :]), "a reply caption after the question"
    assert call["mute_works"], "Mute disables the microphone track and Unmute enables it"
    assert call["stats"]["packets"] > 100 and call["stats"]["energy"] > 0.01, call["stats"]
    assert call["screenshot"] and (ARTIFACTS / "webrtc-call.png").stat().st_size > 10000
    assert result["turns"] and result["turns"][0]["user_text"], result["turns"]
    assert "webrtc call ended" in result["server"]


def test_two_gateways_offer_their_own_ice_addresses_and_other_connections_keep_aioice_s():
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def offer() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("x")
        pc.addTransceiver("audio")
        with ice_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    def hosts(sdp: str) -> set[str]:
        return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}

    async def main() -> tuple[set[str], set[str], set[str]]:
        install_ice_address_hook()
        install_ice_address_hook()  # idempotent
        idle = echo_handler(0.2)
        a = WebRtcGateway(
            WebRtcConfig(ice_addresses=["127.0.0.1"]), lambda i: idle, CallLimiter(4), Metrics()
        )
        b = WebRtcGateway(
            WebRtcConfig(ice_addresses=["127.0.0.2"]), lambda i: idle, CallLimiter(4), Metrics()
        )
        a.accepting = b.accepting = True
        try:
            answers = await asyncio.gather(
                a.answer(await offer(), "echo", "t"), b.answer(await offer(), "echo", "t")
            )
        finally:
            await a.stop(0.5)
            await b.stop(0.5)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no gateway: aioice's own choice
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        plain = hosts(pc.localDescription.sdp)
        await pc.close()
        return hosts(answers[0].sdp), hosts(answers[1].sdp), plain

    first, second, plain = asyncio.run(main())
    assert first == {"127.0.0.1"} and second == {"127.0.0.2"}
    assert "127.0.0.1" not in plain and "127.0.0.2" not in plain
