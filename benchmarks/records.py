"""Call records: what they cost a live call, and how fast webhooks arrive.

    .venv/bin/python benchmarks/records.py [--calls 40] [--out FILE]

- store: the time the event loop spends writing one call's rows (start, 6 turns, end with its
  events) into a real SQLite file, per statement kind (p50/p95 ms);
- webhooks: from the commit that wrote an event to a real local receiver's 2xx (p50/p95 ms),
  with every delivery answered at once, and with a receiver that fails 20 % of attempts;
- recording: bytes per minute of a call, and the CPU time the recorder spends per minute
  (interleaving and writing, in its worker thread).

JSON: benchmarks/results/records.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import WebhookConfig  # noqa: E402
from agent.records.db import Database  # noqa: E402
from agent.records.recording import Recorder  # noqa: E402
from agent.records.store import CallStore, Turn  # noqa: E402
from agent.records.webhooks import Dispatcher  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    return round(sorted(xs)[min(int(q * len(xs)), len(xs) - 1)], 2) if xs else float("nan")


async def webhooks(calls: int, fail_share: float, folder: Path) -> dict[str, Any]:
    arrived: dict[str, float] = {}
    rng = random.Random(7)

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if rng.random() < fail_share:
            return web.Response(status=503)
        arrived.setdefault(json.loads(body)["id"], time.time())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    endpoint = WebhookConfig(url=f"http://127.0.0.1:{port}/hook", secret="benchmark-secret-0123")
    store = CallStore(Database(folder / f"calls-{fail_share}.db"), [endpoint])
    dispatcher = Dispatcher(store.outbox, [endpoint], base_delay_s=0.05)
    store.on_event = dispatcher.wake
    task = asyncio.ensure_future(dispatcher.run())
    writes: dict[str, list[float]] = {"start": [], "turn": [], "end": []}
    for i in range(calls):
        t0 = time.perf_counter()
        call = store.start(
            sip_call_id=f"b{i}", transport="sip", from_uri="sip:a@b", to_uri="sip:c@d", dialplan="bench",
            offered=time.time(),
        )  # fmt: skip
        writes["start"].append((time.perf_counter() - t0) * 1000)
        for n in range(6):
            t0 = time.perf_counter()
            store.add_turn(
                call, Turn(n, 2.0 * n, "When are you open on Saturday?", "Ten to four.", False, "", {})
            )
            writes["turn"].append((time.perf_counter() - t0) * 1000)
        t0 = time.perf_counter()
        store.end(call, "completed")
        writes["end"].append((time.perf_counter() - t0) * 1000)
        await asyncio.sleep(0.05)  # calls end apart, as they do
    deadline = time.monotonic() + 120
    while store.outbox.depth() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    created = {r["event_id"]: r["created"] for r in store.db.query("SELECT event_id, created FROM outbox")}
    latency = [(arrived[e] - c) * 1000 for e, c in created.items() if e in arrived]
    task.cancel()
    await dispatcher.stop()
    await runner.cleanup()
    return {
        "events": len(created),
        "delivered": len(latency),
        "receiver_fails_share": fail_share,
        "latency_ms": {"p50": pct(latency, 0.5), "p95": pct(latency, 0.95), "max": round(max(latency), 1)},
        "store_write_ms": {k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95)} for k, v in writes.items()},
    }


async def recording(folder: Path, seconds: int = 60) -> dict[str, Any]:
    rec = Recorder(folder / "call.wav")
    writer = asyncio.ensure_future(rec.run())
    frame = (np.sin(np.arange(320) / 5) * 8000).astype(np.int16).tobytes()
    cpu0 = time.thread_time()
    proc0 = time.process_time()
    for second in range(seconds):  # as a media thread would: in time, not all at once
        for _ in range(50):
            rec.caller(frame)
            rec.agent(frame)
        if second % 5 == 4:
            await asyncio.sleep(0.6)  # the writer runs every 0.5 s
    info = await rec.close()
    await writer
    return {
        "seconds": info.seconds,
        "bytes_per_minute": round(info.bytes / info.seconds * 60),
        "cpu_ms_per_minute": round(
            (time.process_time() - proc0 - (time.thread_time() - cpu0)) * 1000 / seconds * 60
        ),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/records.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = {
            "webhooks": await webhooks(args.calls, 0.0, folder),
            "webhooks_with_failures": await webhooks(args.calls, 0.2, folder),
            "recording": await recording(folder),
        }
    out["machine"] = {"cores": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
