"""The web widget in real Chromium (Playwright), against a real `voice-agent serve`.

Run it inside `unshare -n` when possible (a private network namespace: only loopback, so
neither ICE nor mDNS can reach any other address). It serves the agent, then:
  1. opens the demo page with the microphone denied and records what the page shows;
  2. opens it with a fake microphone playing `mic.wav`, presses Call, and records the states,
     captions, the received audio's energy (getStats) and screenshots mid-call;
  3. hangs up.
Writes result.json and screenshots into OUT; exits non-zero only if it could not run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.peers import ServedAgent, free_port, serve_agent  # noqa: E402

STATS = """async () => {
  const w = VoiceAgentWidget.widgets[0];
  if (!w.pc) return null;
  const out = {};
  (await w.pc.getStats()).forEach(s => {
    if (s.type === 'inbound-rtp' && s.kind === 'audio')
      Object.assign(out, {energy: s.totalAudioEnergy, level: s.audioLevel, packets: s.packetsReceived,
                          bytes: s.bytesReceived});
  });
  return out;
}"""
WIDGET = "VoiceAgentWidget.widgets[0]"


def start_agent(out: Path) -> tuple[ServedAgent, str]:
    port = free_port()
    agent = serve_agent(
        f"sip:\n  enabled: false\nhttp:\n  host: 127.0.0.1\n  port: {port}\n"
        f"webrtc:\n  ice_addresses: [127.0.0.1]\ndialplans:\n  dir: {ROOT / 'dialplans'}\n",
        out,
    )
    return agent, f"http://127.0.0.1:{port}"


def denied(browser, base: str, out: Path) -> dict:
    """The microphone refused: the page must say so and stay usable."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844})  # a phone, no permission
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base)
    page.click(".va-call")
    page.wait_for_selector(".va-error:not([hidden])", timeout=10000)
    page.screenshot(path=str(out / "webrtc-denied-phone.png"))
    result = {
        "error_text": page.inner_text(".va-error"),
        "call_button_visible": page.is_visible(".va-call"),
        "state": page.evaluate(f"{WIDGET}.state"),
        "overflows": page.evaluate("document.documentElement.scrollWidth > window.innerWidth"),
        "page_errors": errors,
    }
    ctx.close()
    return result


def call(browser, base: str, out: Path, timeout_s: float = 60) -> dict:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.grant_permissions(["microphone"], origin=base)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base)
    states: list[str] = []
    page.expose_function("vaState", lambda s: states.append(s))
    page.evaluate(f"""() => {{ const w = {WIDGET}; const set = w._setState.bind(w);
        w._setState = s => {{ window.vaState(s); set(s); }}; }}""")
    page.click(".va-call")
    deadline = time.monotonic() + timeout_s
    captions: list[dict] = []
    shot = muted = False
    while time.monotonic() < deadline:
        captions = page.evaluate(f"{WIDGET}.captions")
        who = [c["who"] for c in captions]
        if "caller" in who and "agent" in who[who.index("caller") :]:
            page.wait_for_timeout(1200)  # let the reply's first sentence be heard
            page.screenshot(path=str(out / "webrtc-call.png"))
            shot = True
            captions = page.evaluate(f"{WIDGET}.captions")
            page.click(".va-mute")
            muted = page.evaluate(f"{WIDGET}.stream.getAudioTracks().every(t => !t.enabled)")
            page.click(".va-mute")
            muted = muted and page.evaluate(f"{WIDGET}.stream.getAudioTracks().every(t => t.enabled)")
            break
        page.wait_for_timeout(250)
    else:
        page.screenshot(path=str(out / "webrtc-call-timeout.png"))
    stats = page.evaluate(STATS)
    page.click(".va-hangup")
    page.wait_for_timeout(1000)
    result = {
        "states": states,
        "captions": captions,
        "stats": stats,
        "final_state": page.evaluate(f"{WIDGET}.state"),
        "screenshot": shot,
        "mute_works": muted,
        "page_errors": errors,
    }
    ctx.close()
    return result


def main(out: Path, mic_wav: Path) -> int:
    if os.environ.get("VOICE_AGENT_NETNS"):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    from playwright.sync_api import sync_playwright

    agent, base = start_agent(out)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path="/usr/bin/chromium",
                args=[
                    "--no-sandbox",
                    "--use-fake-device-for-media-stream",
                    "--allow-loopback-in-peer-connection",
                    f"--use-file-for-fake-audio-capture={mic_wav}%noloop",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            try:
                result = {"denied": denied(browser, base, out), "call": call(browser, base, out)}
            finally:
                browser.close()
        time.sleep(1.0)
    finally:
        agent.stop()
    result["turns"] = agent.logged("turn record")
    result["server"] = [e.get("event") for e in agent.events if str(e.get("event", "")).startswith("webrtc")]
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
