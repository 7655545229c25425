"""The call store (a real SQLite file), its HTTP API (a real aiohttp server), `voice-agent calls`
and `voice-agent keys create`, upkeep (recovery after a crash, expiry)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import aiohttp
import numpy as np
from aiohttp import web

from agent.api.calls import CallsApi, decode_cursor, encode_cursor
from agent.api.keys import ApiKeys, hash_key
from agent.api.keystore import KeyStore
from agent.config import ApiKeyConfig, WebhookConfig
from agent.dialog.session import Outcome
from agent.records.callrecord import transcript_of
from agent.records.db import Database
from agent.records.listing import parse_time
from agent.records.recording import StereoWav
from agent.records.store import RESULTS, CallStore, Turn
from agent.records.upkeep import expire, recover

ROOT = Path(__file__).resolve().parent.parent
HOOK = WebhookConfig(url="http://127.0.0.1:9/hook", secret="s" * 16, events=["call.started", "call.ended"])


def store_at(path: Path, *endpoints: WebhookConfig) -> CallStore:
    return CallStore(Database(path / "calls.db"), endpoints)


def start(store: CallStore, dialplan: str = "clinic", offered: float | None = None) -> str:
    return store.start(
        sip_call_id="abc@10.0.0.1", transport="sip", from_uri="sip:alice@127.0.0.2",
        to_uri="sip:clinic@agent", dialplan=dialplan, offered=time.time() if offered is None else offered,
    )  # fmt: skip


def turn(i: int, caller: str = "When are you open?", interrupted: bool = False) -> Turn:
    return Turn(i, 1.5 + 5 * i, caller, "We open at nine.", interrupted, "", {"voice_to_answer": 1.2})


def outbox_events(store: CallStore) -> list[tuple[str, str]]:
    return [
        (r["event"], r["call_id"]) for r in store.db.query("SELECT event, call_id FROM outbox ORDER BY id")
    ]


def test_results_are_the_sessions_outcomes_failed_and_the_outgoing_calls_ends():
    assert set(RESULTS) == {*get_args(Outcome), "failed", "no answer", "busy", "voicemail"}  # + outbound


def test_a_call_is_stored_with_its_turns_and_raises_the_events_its_endpoints_want(tmp_path):
    store = store_at(tmp_path, HOOK)
    woken: list[int] = []
    store.on_event = lambda: woken.append(1)
    call = start(store)
    store.add_turn(call, turn(0))
    store.add_turn(call, turn(1, "Do you take Aetna?", interrupted=True))
    store.end(call, "caller hung up")
    store.end(call, "failed")  # a second end changes nothing and raises nothing
    record = store.get(call)
    assert record is not None
    assert record["result"] == "caller hung up" and not record["cut_off"] and record["duration_s"] >= 0
    assert [t["caller"] for t in record["turns"]] == ["When are you open?", "Do you take Aetna?"]
    assert record["turns"][1]["interrupted"] is True
    # call.answered is not subscribed to; one call.ended for the two end()s
    assert outbox_events(store) == [("call.started", call), ("call.ended", call)]
    ended = json.loads(store.db.query("SELECT body FROM outbox WHERE event = 'call.ended'")[0]["body"])
    assert ended["data"]["call"]["result"] == "caller hung up" and len(ended["data"]["call"]["turns"]) == 2
    assert woken, "the dispatcher is woken after the commit"


def test_listing_filters_and_pages_newest_first(tmp_path):
    store = store_at(tmp_path)
    t0 = 1_790_000_000.0
    ids = [start(store, "clinic" if i % 2 else "bikeshop", offered=t0 + i) for i in range(7)]
    for i, call in enumerate(ids):
        store.end(call, "completed" if i < 5 else "abandoned")
    assert [c["id"] for c in store.list()] == ids[::-1]
    assert [c["id"] for c in store.list(dialplan="clinic")] == [ids[5], ids[3], ids[1]]
    assert [c["id"] for c in store.list(result="abandoned")] == [ids[6], ids[5]]
    assert [c["id"] for c in store.list(since=t0 + 2, until=t0 + 4)] == [ids[3], ids[2]]
    first = store.list(limit=3)
    last = first[-1]
    second = store.list(limit=3, before=(last["offered"], last["id"]))
    assert [c["id"] for c in first + second] == ids[::-1][:6]


def test_calls_of_a_dead_process_are_ended_as_cut_off_with_their_recording_repaired(tmp_path):
    store = store_at(tmp_path, HOOK)
    call = start(store)
    store.add_turn(call, turn(0))
    wav = tmp_path / "rec" / f"{call}.wav"
    writer = StereoWav(wav)
    second = np.zeros(16000, np.int16).tobytes()
    for _ in range(3):
        writer.write(second, second)
    writer.sync()
    writer.write(second, second)  # the last second: in the file, not yet in the header
    store.set_files(call, recording=str(wav), transcript=str(wav.with_suffix(".json")))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    store.db.query("UPDATE calls SET pid = ? WHERE id = ?", (int(dead.stdout), call))
    alive = start(store)  # this process's call is left alone

    assert recover(store) == 1
    record = store.get(call)
    assert record is not None and record["result"] == "failed" and record["cut_off"]
    assert abs(record["duration_s"] - 4.0) < 0.5, record  # answered + the recording's length
    soxi = subprocess.run(["soxi", "-D", str(wav)], capture_output=True, text=True, check=True)
    assert abs(float(soxi.stdout) - 4.0) < 0.01
    transcript = json.loads(wav.with_suffix(".json").read_text())
    assert transcript["result"] == "failed" and transcript["lines"][0]["text"] == "When are you open?"
    assert store.get(alive)["result"] is None  # type: ignore[index]
    assert ("call.ended", call) in outbox_events(store)
    assert recover(store) == 0


def _open_store(path: Path, start: Any) -> None:
    start.wait()
    db = Database(path)
    CallStore(db, [])
    KeyStore(db)
    db.close()


def test_processes_opening_a_new_store_at_once_all_succeed(tmp_path):
    """Cluster workers start together on one new file: switching it to WAL must wait, not fail
    with "database is locked" (this failed about one round in eight before)."""
    fork = multiprocessing.get_context("fork")
    for round_ in range(24):
        start = fork.Barrier(4)
        procs = [fork.Process(target=_open_store, args=(tmp_path / f"{round_}.db", start)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0], f"round {round_}"


def test_expiry_deletes_old_recordings_per_dialplan_retention(tmp_path):
    store = store_at(tmp_path)
    now = time.time()
    calls = {}
    for name, age_days in (("old-clinic", 10), ("new-clinic", 1), ("old-shop", 10)):
        plan = name.split("-")[1]
        call = start(store, plan, offered=now - age_days * 86400)
        wav = tmp_path / f"{name}.wav"
        wav.write_bytes(b"RIFF")
        store.set_files(call, recording=str(wav))
        store.end(call, "completed")
        calls[name] = (call, wav)
    assert expire(store, {"clinic": 5, "shop": 30}, now) == 1
    assert not calls["old-clinic"][1].exists() and store.get(calls["old-clinic"][0])["recording"] is None  # type: ignore[index]
    assert calls["new-clinic"][1].exists() and calls["old-shop"][1].exists()


def test_transcript_lists_who_said_what_and_what_was_cut_off():
    record = {"id": "x", "turns": [turn(0).__dict__, turn(1, "Wait, Saturday?", True).__dict__]}
    lines = transcript_of(record, "Hello, clinic.")["lines"]
    assert [(line["who"], line["text"]) for line in lines][:3] == [
        ("agent", "Hello, clinic."), ("caller", "When are you open?"), ("agent", "We open at nine."),
    ]  # fmt: skip
    assert lines[2]["at_s"] == 2.7 and lines[4]["cut_off"] is True


# --- the HTTP API ------------------------------------------------------------------------
READER, WRITER = "va_reader-key-for-tests", "va_writer-key-for-tests"


def api_keys() -> ApiKeys:
    return ApiKeys([
        ApiKeyConfig(name="reader", sha256=hash_key(READER), scopes=["calls:read"]),
        ApiKeyConfig(name="writer", sha256=hash_key(WRITER), scopes=["calls:write"]),
    ])  # fmt: skip


async def with_api(store: CallStore, body: Any) -> Any:
    app = web.Application()
    app.router.add_routes(CallsApi(store, api_keys()).routes())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            return await body(http)
    finally:
        await runner.cleanup()


def test_the_calls_api_wants_a_key_with_the_read_scope_and_pages(tmp_path):
    store = store_at(tmp_path)
    ids = [start(store, offered=1_790_000_000.0 + i) for i in range(5)]
    store.add_turn(ids[0], turn(0))
    wav = tmp_path / "r.wav"
    StereoWav(wav).close()
    store.set_files(ids[0], recording=str(wav))
    auth = {"Authorization": f"Bearer {READER}"}

    async def body(http: aiohttp.ClientSession) -> None:
        r = await http.get("/v1/calls")
        assert r.status == 401 and "Bearer" in r.headers["WWW-Authenticate"]
        assert (await http.get("/v1/calls", headers={"Authorization": "Bearer va_wrong"})).status == 401
        assert (await http.get("/v1/calls", headers={"Authorization": f"Bearer {WRITER}"})).status == 403
        assert (await http.get("/v1/calls", headers={"X-API-Key": READER})).status == 200
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = await (await http.get("/v1/calls", headers=auth, params=params)).json()
            seen += [c["id"] for c in page["calls"]]
            if not (cursor := page["next_cursor"]):
                break
        assert seen == ids[::-1]
        for bad in ({"limit": "0"}, {"result": "maybe"}, {"since": "yesterday"}, {"cursor": "!!"}):
            r = await http.get("/v1/calls", headers=auth, params=bad)
            assert r.status == 400 and "error" in await r.json(), bad
        record = await (await http.get(f"/v1/calls/{ids[0]}", headers=auth)).json()
        assert record["turns"][0]["caller"] == "When are you open?"
        transcript = await (await http.get(f"/v1/calls/{ids[0]}/transcript", headers=auth)).json()
        assert transcript["lines"][0] == {"who": "caller", "at_s": 1.5, "text": "When are you open?"}
        rec = await http.get(f"/v1/calls/{ids[0]}/recording", headers=auth)
        assert (
            rec.status == 200
            and rec.headers["Content-Type"] == "audio/wav"
            and (await rec.read())[:4] == b"RIFF"
        )
        assert (await http.get(f"/v1/calls/{ids[1]}/recording", headers=auth)).status == 404
        assert (await http.get("/v1/calls/nope", headers=auth)).status == 404

    asyncio.run(with_api(store, body))


def test_times_and_cursors_parse():
    assert parse_time("1790000000") == 1790000000.0
    assert parse_time("2026-12-01T00:00:00Z") == parse_time("2026-12-01") == 1796083200.0
    assert decode_cursor(encode_cursor(1790000000.25, "abc")) == (1790000000.25, "abc")


# --- the command line ----------------------------------------------------------------------
def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=60, cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_voice_agent_calls_lists_the_store(tmp_path):
    store = store_at(tmp_path)
    old = start(store, offered=time.time() - 3 * 86400)
    new = start(store)
    store.end(new, "transferred")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  dir: {tmp_path}\n")
    table = cli("calls", "--config", str(cfg))
    assert table.returncode == 0, table.stderr
    assert "transferred" in table.stdout and "in progress" in table.stdout and new in table.stdout
    recent = cli("calls", "--config", str(cfg), "--since", "1d", "--json")
    rows = [json.loads(line) for line in recent.stdout.splitlines()]
    assert [r["id"] for r in rows] == [new] and old not in recent.stdout


def test_keys_are_made_once_kept_hashed_in_the_store_and_revoked(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  dir: {tmp_path}\n")
    made = cli("keys", "create", "--name", "crm", "--scope", "calls:read,calls:write", "--config", str(cfg))
    assert made.returncode == 0, made.stderr
    key = made.stdout.split("keep it secret): ")[1].split()[0]
    assert key.startswith("va_") and key not in (tmp_path / "calls.db").read_bytes().decode(errors="replace")
    keys = ApiKeys([], KeyStore(Database(tmp_path / "calls.db")))
    found = keys.find(key)
    assert found is not None and found.scopes == ["calls:read", "calls:write"]
    assert cli("keys", "create", "--name", "crm", "--scope", "speech", "--config", str(cfg)).returncode == 2
    assert cli("keys", "create", "--name", "x", "--scope", "root", "--config", str(cfg)).returncode == 2
    assert cli("keys", "revoke", "--name", "crm", "--config", str(cfg)).returncode == 0
    assert keys.find(key) is None  # at once: the store is read on each request
    listed = cli("keys", "list", "--config", str(cfg)).stdout
    assert "crm" in listed and "revoked" in listed
    assert cli("keys", "revoke", "--name", "crm", "--config", str(cfg)).returncode == 1


def jwt(secret: str, claims: dict[str, Any], alg: str = "HS256") -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(secret.encode(), head.encode(), hashlib.sha256).digest())


def test_jwts_signed_with_the_secret_are_keys_and_each_key_keeps_to_its_rate(tmp_path):
    secret = "a-jwt-secret-of-at-least-32-characters!"
    keys = ApiKeys([ApiKeyConfig(name="reader", sha256=hash_key(READER), scopes=["calls:read"])],
                   requests_per_minute=6, jwt_secret=secret)  # fmt: skip
    app = web.Application()

    async def ok(request: web.Request) -> web.StreamResponse:
        return keys.check(request, "calls:read") or web.json_response({})

    app.router.add_get("/v1/x", ok)
    now = time.time()
    good = jwt(secret, {"sub": "site", "scope": "calls:read", "exp": now + 60})

    async def body(http: aiohttp.ClientSession) -> None:
        def get(token: str) -> Any:
            return http.get("/v1/x", headers={"Authorization": f"Bearer {token}"})

        assert (await get(good)).status == 200
        for bad in (
            jwt(secret, {"sub": "site", "scope": "calls:read", "exp": now - 1}),  # expired
            jwt(secret, {"sub": "site", "scope": "calls:read"}),  # no exp
            jwt("another-secret-of-at-least-32-characters", {"scope": "calls:read", "exp": now + 60}),
            jwt(secret, {"scope": "calls:read", "exp": now + 60}, alg="none"),
        ):
            assert (await get(bad)).status == 401
        assert (await get(jwt(secret, {"scope": "speech", "exp": now + 60}))).status == 403
        statuses = [(await get(READER)).status for _ in range(12)]  # a burst of 10, then the rate
        assert statuses[:10] == [200] * 10 and statuses[-1] == 429

    async def serve() -> None:
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{runner.addresses[0][1]}") as http:
                await body(http)
        finally:
            await runner.cleanup()

    asyncio.run(serve())


def test_an_unusable_store_folder_is_a_clear_start_up_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store:\n  dir: {blocker / 'var'}\nsip:\n  enabled: false\nhttp:\n  enabled: false\n")
    proc = cli("serve", "--config", str(cfg))
    assert proc.returncode == 2 and "call store" in proc.stderr and "store.dir" in proc.stderr, proc.stderr
