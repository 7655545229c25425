"""The agent process's own duties: shutdown order, and a dead pjsip thread is not hidden."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agent.config import Config
from agent.errors import StartupError
from agent.server import Server
from agent.telephony.pjthread import PjsipThread
from agent.telephony.sip import SipEndpoint
from tests.peers import LOCAL, free_port


def test_a_pjsip_poll_that_raises_is_reported_and_the_thread_is_not_alive():
    died: list[BaseException] = []
    thread = PjsipThread(on_death=died.append)
    polled = threading.Event()

    def poll(ms: int) -> None:
        polled.set()
        raise RuntimeError("pjsip broke")

    thread.start(lambda: None, poll, lambda: None).result(5)
    assert polled.wait(5)
    thread.stop(5)
    assert not thread.alive and isinstance(thread.died, RuntimeError) and died == [thread.died]


def test_shutdown_hangs_up_calls_before_the_engines_close(tmp_path):
    order: list[str] = []

    class Transport:
        def __init__(self, name: str) -> None:
            self.name = name

        async def stop(self) -> None:
            await asyncio.sleep(0.01)  # a session's last turn may still use the engines here
            order.append(self.name)

    class Engines:
        def close(self) -> None:
            order.append("engines")

    cfg = Config.model_validate(
        {"sip": {"enabled": False}, "http": {"enabled": False}, "store": {"dir": tmp_path}}
    )
    server = Server(cfg)
    server.sip, server.webrtc, server.services = Transport("sip"), Transport("webrtc"), Engines()  # type: ignore[assignment]
    asyncio.run(server._shutdown())
    assert order == ["webrtc", "sip", "engines"]


def test_a_dead_pjsip_thread_makes_readyz_fail_and_serve_exit_with_an_error(monkeypatch, tmp_path):
    polls = 0
    real_poll = SipEndpoint._poll

    def poll(self: SipEndpoint, ms: int) -> None:
        nonlocal polls
        polls += 1
        if polls > 20:
            raise RuntimeError("pjsip broke")
        real_poll(self, ms)

    async def no_engines(self: Server) -> bool:
        self.engines = object()  # type: ignore[assignment]
        return True

    monkeypatch.setattr(SipEndpoint, "_poll", poll)
    monkeypatch.setattr(Server, "_load_engines", no_engines)
    cfg = Config.model_validate(
        {
            "sip": {"host": LOCAL, "port": free_port(), "rtp_port": 0},
            "http": {"enabled": False},
            "store": {"dir": tmp_path},
        }
    )
    server = Server(cfg)
    readiness: list[tuple[bool, dict[str, Any]]] = []

    async def main() -> None:
        run = asyncio.ensure_future(server.run())
        while server.sip is None or not server.sip.failed.is_set():
            await asyncio.sleep(0.01)
        readiness.append(server.readiness())
        await asyncio.wait_for(run, 10)

    with pytest.raises(StartupError, match="SIP endpoint died"):
        asyncio.run(main())
    assert readiness[0][0] is False


def test_readyz_names_each_engine_breaker_and_is_not_ready_while_one_is_open(tmp_path):
    from agent.dialog.services import Services
    from agent.engines.fakes import FakeLLM, FakeSTT, FakeTTS, FakeVAD

    cfg = Config.model_validate(
        {"sip": {"enabled": False}, "http": {"enabled": False}, "store": {"dir": tmp_path}}
    )
    server = Server(cfg)
    server.engines = object()  # type: ignore[assignment]
    server.services = Services(FakeVAD(), FakeSTT(), FakeLLM(), {"joe": FakeTTS()}, "joe")
    ready, details = server.readiness()
    assert ready and details["engines"] == {"stt": "closed", "llm": "closed", "tts": "closed"}
    for _ in range(3):
        server.services.breakers["llm"].failed(0.0)
    ready, details = server.readiness()
    assert not ready and details["engines"]["llm"] == "open"
    server.services.close()
