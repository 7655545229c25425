"""Real SIP peers for tests: SIPp scenarios, a headless baresip, and our endpoint on a thread.

Everything binds and advertises 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.audio.wav import read_wav
from agent.dialog.dialplan import Dialplan
from agent.dialog.services import Services
from agent.sipconfig import SipConfig
from agent.telephony.call import CallHandler, CallInfo, CallLeg
from agent.telephony.echo import echo_handler
from agent.telephony.limits import CallLimiter
from callsim.sdp import CODECS

LOCAL = "127.0.0.1"
SIPP_PCAPS = Path("/usr/share/sip-tester")


def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    """Poll a condition (e.g. a slot freed once pjsua processed the BYE); True if it held."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def netns_available() -> bool:
    """Whether this process may create a network namespace (`unshare -n` needs CAP_SYS_ADMIN)."""
    return (
        shutil.which("unshare") is not None
        and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    )


def free_port(span: int = 1) -> int:
    """A port free for both UDP and TCP on 127.0.0.1; with `span`, the first of that many free
    in a row (a cluster's front and its workers), taken below the ephemeral range, where no
    other socket of the machine is handed one of them meanwhile."""
    if span > 1:
        import random

        for _ in range(200):
            base = random.randrange(20000, 32000 - span)
            if all(_free(p) for p in range(base, base + span)):
                return base
        raise RuntimeError("no free run of ports")
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind((LOCAL, 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind((LOCAL, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((LOCAL, port))
            except OSError:
                return False
    return True


# --- SIPp ---------------------------------------------------------------------------------
_HEADERS = """Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: sipp <sip:sipp@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>{peer_tag}
Call-ID: [call_id]
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70"""


def _msg(text: str) -> str:
    return "<![CDATA[\n" + "\n".join(line.strip() for line in text.strip().splitlines()) + "\n\n]]>"


def sipp_call_scenario(
    codec: str = "PCMA",
    media: list[tuple[str, str | int]] | None = None,
    end: str = "send_bye",
    expect: int = 200,
    dtmf_info_answer: int = 500,
) -> str:
    """A UAC scenario: INVITE with one codec + telephone-event, then `media` steps, then BYE.

    media: ("pcap", file in /usr/share/sip-tester), ("pause", ms), ("reinvite", "sendonly"/"sendrecv")
    (a re-INVITE: hold and resume), ("info-relay", "5") or ("info-dtmf", "5") (a key by SIP INFO,
    application/dtmf-relay or application/dtmf).
    end: "send_bye" (we hang up) or "recv_bye" (the agent must hang up and we answer 200).
    expect: the final answer to the INVITE; anything but 200 is ACKed and the call ends there.
    dtmf_info_answer: what an application/dtmf INFO gets back (500 from pjsua, 200 via an edge).
    """
    pt = CODECS[codec][0]  # the one payload-type table (callsim's SDP)
    rate = 16000 if codec == "G722" else 8000
    invite = f"""INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{_HEADERS.format(peer_tag="")}
CSeq: 1 INVITE
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [media_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP {pt} 101
a=rtpmap:{pt} {codec}/{8000 if codec == "G722" else rate}
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20"""
    # In-dialog requests follow the route set (a record-routing proxy may be in front).
    ack = f"""ACK [next_url] SIP/2.0
[routes]
{_HEADERS.format(peer_tag="[peer_tag_param]")}
CSeq: 1 ACK
Content-Length: 0"""
    bye = f"""BYE [next_url] SIP/2.0
[routes]
{_HEADERS.format(peer_tag="[peer_tag_param]")}
CSeq: 99 BYE
Content-Length: 0"""

    # The ACK of a failure answer goes to the request URI (there is no dialog route set).
    ack_failure = f"""ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_HEADERS.format(peer_tag="[peer_tag_param]").split(chr(10), 1)[1]}
CSeq: 1 ACK
Content-Length: 0"""

    def reinvite(direction: str, cseq: int) -> str:
        sdp = invite.split("\n\n", 1)[1] + f"\na={direction}"
        head = f"""INVITE [next_url] SIP/2.0
[routes]
{_HEADERS.format(peer_tag="[peer_tag_param]")}
CSeq: {cseq} INVITE
Content-Type: application/sdp
Content-Length: [len]"""
        ack_n = ack.replace("CSeq: 1 ACK", f"CSeq: {cseq} ACK")
        return (
            f'<send retrans="500">{_msg(head + chr(10) + chr(10) + sdp)}</send>'
            '<recv response="100" optional="true"/><recv response="200"/>'
            f"<send>{_msg(ack_n)}</send>"
        )

    def info_dtmf(kind: str, digit: str, cseq: int) -> str:
        ctype, body = (
            ("application/dtmf-relay", f"Signal={digit}\nDuration=160")
            if kind == "info-relay"
            else ("application/dtmf", digit)
        )
        head = f"""INFO [next_url] SIP/2.0
[routes]
{_HEADERS.format(peer_tag="[peer_tag_param]")}
CSeq: {cseq} INFO
Content-Type: {ctype}
Content-Length: [len]"""
        # pjsua answers a dtmf-relay INFO 200 and (taking its key) an application/dtmf one 500,
        # unless a Kamailio edge has turned it into dtmf-relay.
        answer = 200 if kind == "info-relay" else dtmf_info_answer
        return (
            f'<send retrans="500">{_msg(head + chr(10) + chr(10) + body)}</send><recv response="{answer}"/>'
        )

    ok_to_bye = """SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0"""
    steps = [
        f'<send retrans="500">{_msg(invite)}</send>',
        '<recv response="100" optional="true"/>',
        '<recv response="180" optional="true"/>',
    ]
    if expect != 200:
        steps += [f'<recv response="{expect}"/>', f"<send>{_msg(ack_failure)}</send>"]
    else:
        steps += ['<recv response="200" rtd="true" rrs="true"/>', f"<send>{_msg(ack)}</send>"]
        cseq = 10
        for kind, value in media or []:
            if kind == "reinvite":
                cseq += 1
                steps.append(reinvite(str(value), cseq))
            elif kind in ("info-relay", "info-dtmf"):  # a key press by SIP INFO, both body types
                cseq += 1
                steps.append(info_dtmf(kind, str(value), cseq))
            elif kind == "pcap":
                steps.append(f'<nop><action><exec play_pcap_audio="pcap/{value}"/></action></nop>')
            else:
                steps.append(f'<pause milliseconds="{value}"/>')
        if end == "send_bye":
            steps += [f'<send retrans="500">{_msg(bye)}</send>', '<recv response="200"/>']
        else:
            steps += ['<recv request="BYE" timeout="30000"/>', f"<send>{_msg(ok_to_bye)}</send>"]
    body = "\n".join(steps)
    head = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="voice-agent test">'
    return f"{head}\n{body}\n</scenario>\n"


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    output: str


def run_sipp(
    workdir: Path,
    scenario: str,
    port: int,
    service: str = "echo",
    calls: int = 1,
    concurrency: int = 1,
    rate: float = 10,
    timeout: float = 60,
    transport: str = "u1",
    background: bool = False,
    local_port: int | None = None,
    from_ip: str = LOCAL,
) -> SippResult | subprocess.Popen[str]:
    """Run SIPp against 127.0.0.1:port from `from_ip` (any 127.x address: another caller);
    returns its result (or the process if background)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pcap").unlink(missing_ok=True)
    (workdir / "pcap").symlink_to(SIPP_PCAPS)
    if scenario.startswith("<?xml"):
        xml = workdir / f"scenario-{abs(hash(scenario))}.xml"
        xml.write_text(scenario)
        source = ["-sf", str(xml)]
    else:
        source = ["-sn", scenario]  # a SIPp built-in, e.g. uac_pcap
    stat = workdir / f"stat-{free_port()}.csv"
    remote = [f"{LOCAL}:{port}"] if port else []  # no remote: SIPp is the server (UAS)
    cmd = [
        "sipp",
        *remote,
        *source,
        "-s",
        service,
        "-i",
        from_ip,
        "-mi",
        from_ip,
        "-p",
        str(local_port or free_port()),
        "-m",
        str(calls),
        "-l",
        str(concurrency),
        "-r",
        str(rate),
        "-t",
        transport,
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        "-trace_err",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if background:
        proc.stat_file = stat  # type: ignore[attr-defined]
        return proc
    out, _ = proc.communicate(timeout=timeout + 30)
    return sipp_result(proc.returncode, stat, out)


def sipp_result(returncode: int, stat: Path, output: str) -> SippResult:
    successful = failed = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        lines = stat.read_text().strip().splitlines()
        header = lines[0].split(";")
        last = lines[-1].split(";")
        successful = int(last[header.index("SuccessfulCall(C)")])
        failed = int(last[header.index("FailedCall(C)")])
    return SippResult(returncode, successful, failed, output)


# --- baresip --------------------------------------------------------------------------------
@dataclass
class BaresipCall:
    heard: np.ndarray  # what baresip decoded from us
    sent: np.ndarray  # what baresip encoded and sent
    rate: int
    log: str


def _baresip_setup(
    workdir: Path, wav_in: Path, account: str, listen_port: int = 0, extra: str = ""
) -> tuple[Path, Path]:
    """A baresip config folder (WAV file as microphone; what it hears and sends dumped as WAVs
    into the returned dump folder) with one account line; `extra`: more config lines."""
    cfg = workdir / "baresip"
    dump = workdir / "dump"
    shutil.rmtree(dump, ignore_errors=True)
    cfg.mkdir(parents=True, exist_ok=True)
    dump.mkdir(parents=True)
    (cfg / "config").write_text(
        f"""poll_method epoll
sip_listen {LOCAL}:{listen_port or free_port()}
audio_player aubridge,nil
audio_alert aubridge,nil
audio_source aufile,{wav_in}
ausrc_format s16
auplay_format s16
jitter_buffer_delay 1-5
module_path /usr/lib/baresip/modules
module g711.so
module g722.so
module aufile.so
module aubridge.so
module sndfile.so
module_tmp account.so
module_app menu.so
snd_path {dump}
{extra}"""
    )
    (cfg / "accounts").write_text(account + "\n")
    return cfg, dump


def _baresip_result(dump: Path, output: str) -> BaresipCall:
    dec = glob.glob(str(dump / "*-dec.wav"))
    enc = glob.glob(str(dump / "*-enc.wav"))
    if not dec or not enc:
        raise AssertionError(f"baresip recorded nothing:\n{output[-5000:]}")
    heard, rate = read_wav(dec[0])
    sent, _ = read_wav(enc[0])
    return BaresipCall(heard, sent, rate, output)


def _codec_name(codec: str) -> str:
    return "G722/16000/1" if codec == "G722" else codec  # baresip assumes 8000 Hz otherwise


def baresip_call(
    workdir: Path,
    target: str,
    wav_in: Path,
    codec: str,
    seconds: int = 12,
    user: str = "caller",
    password: str = "",
    account_extra: str = "",
    config_extra: str = "",
) -> BaresipCall:
    """Dial `target` with a WAV file as microphone; return both directions as recorded by baresip.
    With `password`, baresip answers a digest challenge as `user`. `account_extra` (";mediaenc=
    srtp-mand") and `config_extra` (config lines) go into baresip's account and config.

    The WAV must be mono 16-bit at the codec's rate (8000 for PCMU/PCMA, 16000 for G722).
    baresip hangs up when the file ends.
    """
    auth = f";auth_pass={password}" if password else ""
    account = f"<sip:{user}@{LOCAL}>;regint=0{auth};audio_codecs={_codec_name(codec)}{account_extra}"
    cfg, dump = _baresip_setup(workdir, wav_in, account, extra=config_extra)
    proc = subprocess.run(
        ["baresip", "-f", str(cfg), "-n", LOCAL, "-e", f"/dial {target}", "-t", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds + 20,
        stdin=subprocess.DEVNULL,
    )
    return _baresip_result(dump, proc.stdout + proc.stderr)


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and its key), valid for a day."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


class BaresipPhone:
    """A baresip on 127.0.0.1 waiting for a call (a human's phone), for at most `seconds`.
    With `answer`, it picks up at once and talks with the WAV file (hanging up when it ends);
    without, it rings until the caller gives up. `result()` is what it heard and sent."""

    def __init__(self, workdir: Path, wav_in: Path, codec: str = "PCMU", answer: bool = True,
                 seconds: int = 90, user: str = "human") -> None:  # fmt: skip
        self.port = free_port()
        self.uri = f"sip:{user}@{LOCAL}:{self.port}"
        mode = "auto" if answer else "manual"
        account = f"<sip:{user}@{LOCAL}>;regint=0;answermode={mode};audio_codecs={_codec_name(codec)}"
        cfg, self._dump = _baresip_setup(workdir, wav_in, account, self.port)
        self._proc = subprocess.Popen(
            ["baresip", "-f", str(cfg), "-n", LOCAL, "-t", str(seconds)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self._seconds = seconds
        time.sleep(0.5)  # listening

    def result(self) -> BaresipCall:
        """Stop it (if still running) and return its recordings."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        out, _ = self._proc.communicate(timeout=self._seconds + 20)
        return _baresip_result(self._dump, out)

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate(timeout=20)


def best_lag(heard: np.ndarray, sent: np.ndarray) -> tuple[int, float]:
    """Delay (samples) of `sent` inside `heard`, and the normalised correlation there."""
    h, s = heard.astype(float), sent.astype(float)
    n = len(h) + len(s)
    xc = np.fft.irfft(np.fft.rfft(h, n) * np.conj(np.fft.rfft(s, n)), n)[: len(h)]
    lag = int(np.argmax(xc))
    overlap = min(len(h) - lag, len(s))
    a, b = h[lag : lag + overlap], s[:overlap]
    return lag, float(a @ b / np.sqrt((a @ a) * (b @ b) + 1e-9))


def echo_windows(
    heard: np.ndarray, sent: np.ndarray, rate: int, window_s: float = 0.5
) -> list[tuple[float, float]]:
    """(delay s, correlation) of each speech window of `sent` found in `heard`.

    Per window, because jitter buffers may add or drop a frame mid-call, shifting the delay
    by 20 ms, which would smear one global correlation.
    """
    n = int(window_s * rate)
    out = []
    for start in range(0, len(sent) - n, n):
        w = sent[start : start + n].astype(float)
        if np.sqrt(np.mean(w * w)) < 300:  # silence tells nothing
            continue
        lag, corr = best_lag(heard, sent[start : start + n])
        out.append(((lag - start) / rate, corr))
    return out


# --- our endpoint on a background loop ------------------------------------------------------
@dataclass
class Recorder:
    """What the in-process agent saw of its calls."""

    infos: list[CallInfo] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    codecs: list[str] = field(default_factory=list)
    samples_sent: int = 0
    frames_in: int = 0
    loud_frames_in: int = 0


class AgentThread:
    """A SipEndpoint running on its own asyncio loop in a thread (no models)."""

    def __init__(self, cfg: SipConfig, handler: CallHandler | None = None) -> None:
        from agent.telephony.sip import SipEndpoint

        self.cfg = cfg
        self.recorder = Recorder()
        self.limiter = CallLimiter(cfg.max_calls)
        self._handler = handler or self._recording(echo_handler(0.5))
        self.loop = asyncio.new_event_loop()
        self.endpoint = SipEndpoint(cfg, self._route, self.limiter)
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _route(self, info: CallInfo) -> CallHandler | None:
        self.recorder.infos.append(info)
        return self._handler if info.to_user in ("echo", "dtmf") else None

    def _recording(self, inner: CallHandler) -> CallHandler:
        rec = self.recorder

        async def handler(leg: CallLeg) -> None:
            async def digits() -> None:
                while True:
                    rec.digits.append(await leg.dtmf.get())

            task = asyncio.ensure_future(digits())
            try:
                await inner(_CountingLeg(leg, rec))
            finally:
                task.cancel()
                rec.samples_sent += leg.samples_sent
                rec.codecs.append(leg.info.codec)

        return handler

    def __enter__(self) -> AgentThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.endpoint.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.endpoint.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


class _CountingLeg:
    """Wraps a leg to count caller frames with energy (proof that RTP arrived)."""

    def __init__(self, leg: CallLeg, rec: Recorder) -> None:
        self._leg = leg
        self._rec = rec

    def __getattr__(self, name: str) -> object:
        return getattr(self._leg, name)

    async def frames(self) -> Iterator[np.ndarray]:  # type: ignore[override]
        async for frame in self._leg.frames():
            self._rec.frames_in += 1
            if np.abs(frame).max() > 500:
                self._rec.loud_frames_in += 1
            yield frame


class SessionAgent(AgentThread):
    """Our SIP endpoint answering every call with a CallSession on the given engines."""

    def __init__(self, plan: Dialplan, services: Services) -> None:
        from agent.dialog.session import CallSession

        self.sessions: list[CallSession] = []

        async def converse(leg: CallLeg) -> None:
            session = CallSession(leg, plan, services)
            self.sessions.append(session)
            await session.run()

        super().__init__(SipConfig(host=LOCAL, port=free_port(), rtp_port=0), converse)

    def _route(self, info: CallInfo) -> CallHandler | None:
        return self._handler  # every user


# --- `voice-agent serve` as a subprocess ---------------------------------------------------
@dataclass
class ServedAgent:
    """A running `voice-agent serve`; its JSON log lines keep arriving in `events`."""

    proc: subprocess.Popen[str]
    events: list[dict]

    def stop(self, timeout_s: float = 60) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=timeout_s)

    def logged(self, event: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == event]


def serve_agent(config_yaml: str, work: Path, timeout_s: float = 180) -> ServedAgent:
    """Start `voice-agent serve` with this config; return once it logged "ready"."""
    cfg = work / "agent.yaml"
    if "store:" not in config_yaml:  # call records and recordings stay in the test's folder
        config_yaml += f"\nstore:\n  dir: {work / 'var'}\n"
    cfg.write_text(config_yaml)
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(cfg), "--log-format", "json"],
        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=root,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    agent = ServedAgent(proc, [])
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with contextlib.suppress(ValueError):
                agent.events.append(json.loads(line))
                if agent.events[-1].get("event") == "ready":
                    ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout_s):
        proc.kill()
        raise RuntimeError(f"voice-agent serve did not get ready: {agent.events[-3:]}")
    return agent


def read_log(log: Path, start: int = 0) -> list[dict[str, Any]]:
    """The agent's JSON log lines from line `start` on (a line that is not JSON, e.g. pjlib's
    own, comes back as {"event": line})."""
    out = []
    for line in log.read_text(errors="replace").splitlines()[start:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"event": line})
    return out


class WebhookReceiver:
    """A real HTTP receiver of the agent's webhooks on 127.0.0.1 (its own thread). The first
    `fail_first` attempts of every event get a 500; after that, each request's signature is
    verified with `secret` and the event kept (`events`: first delivery of each id, in order)."""

    def __init__(self, secret: str, fail_first: int = 0, port: int = 0) -> None:
        import http.server

        from agent.records.webhooks import verify

        self.secret, self.fail_first = secret, fail_first
        self.attempts: dict[str, int] = {}
        self.accepted: list[str] = []  # event ids answered with 2xx, every time (duplicates show)
        self.events: list[dict] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                event_id = self.headers["X-Voice-Agent-Event-Id"]
                with receiver.lock:
                    n = receiver.attempts[event_id] = receiver.attempts.get(event_id, 0) + 1
                    if n <= receiver.fail_first:
                        status = 500
                    elif not verify(
                        receiver.secret, body, self.headers["X-Voice-Agent-Signature"], time.time()
                    ):
                        receiver.bad_signatures += 1
                        status = 400
                    else:
                        status = 200
                        receiver.accepted.append(event_id)
                        if event_id not in {e["id"] for e in receiver.events}:
                            receiver.events.append(json.loads(body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait_for(self, count: Callable[[list[dict]], bool], timeout_s: float) -> list[dict]:
        """Wait until `count(events)` holds (bounded); returns the events seen."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if count(self.events):
                    return list(self.events)
            time.sleep(0.1)
        with self.lock:
            return list(self.events)
