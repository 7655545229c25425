"""The HTTP server on an open network, through real sockets on loopback: security headers, no
stack traces, a slowloris client cut off, one source's connection flood capped."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from aiohttp import web

from agent.errors import StartupError
from agent.http import HttpServer
from agent.httpguard import SECURITY_HEADERS, ConnectionGuard, server_tls
from agent.metrics import Metrics
from tests.peers import certificate


async def _boom(_: web.Request) -> web.Response:
    raise RuntimeError("secret internals /etc/voice-agent")


async def serve(guard: ConnectionGuard) -> HttpServer:
    server = HttpServer("127.0.0.1", 0, Metrics(), lambda: (True, {}), guard)
    server.add_routes([web.get("/v1/boom", _boom)])
    await server.start()
    return server


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), seconds) == b""
    except ConnectionResetError:  # the guard aborts: a reset
        return True
    except TimeoutError:
        return False


async def healthz(port: int, source: str = "127.0.0.1") -> bool:
    """One GET /healthz on a fresh connection from `source`: answered 200?"""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = await reader.read()
    writer.close()
    return answer.startswith(b"HTTP/1.1 200")


def test_every_answer_has_security_headers_and_an_error_shows_no_trace():
    async def go() -> None:
        server = await serve(ConnectionGuard())
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as http:
                for path, status in [("/healthz", 200), ("/nowhere", 404), ("/v1/boom", 500)]:
                    async with http.get(base + path) as r:
                        body = await r.text()
                        assert r.status == status, (path, body)
                        for name, value in SECURITY_HEADERS.items():
                            assert r.headers.get(name) == value, (path, name, dict(r.headers))
                assert "Traceback" not in body and "secret" not in body and "RuntimeError" not in body
                assert r.headers["Cache-Control"] == "no-store" and '"error"' in body
        finally:
            await server.stop()

    asyncio.run(go())


def test_a_client_that_sends_its_headers_too_slowly_is_cut_off():
    closed: list[str] = []

    async def go() -> None:
        server = await serve(ConnectionGuard(header_timeout_s=1.0, on_close=closed.append))
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for i in range(20):  # one header line every 0.3 s: never done within the deadline
                if reader.at_eof() or writer.is_closing():
                    break
                try:
                    writer.write(f"X-Slow-{i}: y\r\n".encode())
                    await writer.drain()
                except ConnectionError:
                    break
                await asyncio.sleep(0.3)
            assert await _closed_within(reader, 2.0)
            writer.close()
            assert await healthz(server.port)  # a client that sends its request at once is served
        finally:
            await server.stop()

    asyncio.run(go())
    assert closed == ["slow_headers"]


def test_one_source_cannot_hold_more_than_its_connections():
    cap = 4
    closed: list[str] = []

    async def go() -> None:
        server = await serve(ConnectionGuard(max_per_source=cap, on_close=closed.append))
        held = []
        try:
            for _ in range(cap):  # a flood from 127.0.0.5: idle connections, held open
                held.append(
                    await asyncio.open_connection("127.0.0.1", server.port, local_addr=("127.0.0.5", 0))
                )
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", server.port, local_addr=("127.0.0.5", 0)
            )
            assert await _closed_within(reader, 2.0)
            writer.close()
            # Another source (127.0.0.1) is served during the flood.
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{server.port}/healthz") as r,
            ):
                assert r.status == 200
            for _, w in held:  # the flood ends: its source may connect again
                w.close()
            await asyncio.sleep(0.2)
            assert await healthz(server.port, "127.0.0.5")
        finally:
            await server.stop()

    asyncio.run(go())
    assert closed == ["too_many"]


def test_https_when_given_a_certificate(tmp_path):
    cert, key = certificate(tmp_path)

    async def go() -> None:
        server = HttpServer(
            "127.0.0.1", 0, Metrics(), lambda: (True, {}), tls=server_tls(str(cert), str(key))
        )
        await server.start()
        trust = ssl.create_default_context(cafile=str(cert))
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"https://127.0.0.1:{server.port}/healthz", ssl=trust) as r:
                    assert r.status == 200 and r.headers["Strict-Transport-Security"].startswith("max-age=")
                with pytest.raises(aiohttp.ClientError):  # plain HTTP on the HTTPS port: no answer
                    async with http.get(f"http://127.0.0.1:{server.port}/healthz") as r:
                        await r.read()
        finally:
            await server.stop()

    asyncio.run(go())
    (tmp_path / "bad.pem").write_text("not a certificate")
    with pytest.raises(StartupError, match="cannot use"):
        server_tls(str(tmp_path / "bad.pem"), str(key))
