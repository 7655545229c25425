"""`callsim` command line: run, load, report, reference."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from agent.observe import setup_logging
from agent.yamlconf import ConfigError

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # callsim's STT comes from an installed package

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="callsim", description="Scripted SIP calls against any voice agent.")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    sub = p.add_subparsers(dest="command", required=True)

    def calls(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("scenario", type=Path, help="scenario YAML")
        sp.add_argument("--target", required=True, help="sip:USER@HOST:PORT of the agent")
        sp.add_argument("--out", type=Path, help="results folder (default: callsim-out/NAME-TIME)")
        sp.add_argument("--stt-model", default="tiny.en", help="callsim's own transcriber: tiny.en | base")
        sp.add_argument("--local", default="127.0.0.1", help="our address (another 127.x is another caller)")
        return sp

    calls(sub.add_parser("run", help="place one call and report it"))
    load = calls(sub.add_parser("load", help="place many calls, a few at a time"))
    load.add_argument("--calls", type=int, required=True, help="how many calls (1..10000)")
    load.add_argument("--concurrency", type=int, default=1, help="calls up at once (1..64)")
    load.add_argument("--ramp", type=float, default=0.0, metavar="S", help="spread the first calls over S s")
    load.add_argument("--max-time", type=float, metavar="S", help="cut the whole load after S s")
    report = sub.add_parser("report", help="rebuild summary.json and report.html from saved results")
    report.add_argument("dir", type=Path)
    ref = sub.add_parser("reference", help="serve the parrot target with a known latency (calibration)")
    ref.add_argument("--host", default="127.0.0.1")
    ref.add_argument("--port", type=int, default=5090)
    ref.add_argument(
        "--delay", type=float, default=0.5, help="seconds from the caller's last sound to the reply"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level, "console" if sys.stderr.isatty() else "json")
    try:
        if args.command == "report":
            return _report(args.dir)
        if args.command == "reference":
            return asyncio.run(_reference(args.host, args.port, args.delay))
        return _calls(args)
    except ConfigError as exc:
        print(f"callsim: invalid scenario:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, OSError) as exc:
        print(f"callsim: {exc}", file=sys.stderr)
        return EXIT_USAGE


def _calls(args: argparse.Namespace) -> int:
    from callsim.runner import Meters, run_load, run_one
    from callsim.scenario import load_scenario
    from callsim.sipua import parse_target

    sc = load_scenario(args.scenario)
    parse_target(args.target)  # a bad URI is a usage error before anything loads
    if args.command == "load" and not (1 <= args.calls <= 10000 and 1 <= args.concurrency <= 64):
        raise ValueError("--calls must be 1..10000 and --concurrency 1..64")
    out = args.out or Path("callsim-out") / f"{sc.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    meters = Meters.load(args.stt_model)
    from callsim.report import format_summary

    if args.command == "run":
        _, summary = asyncio.run(run_one(sc, args.target, out, meters, args.local))
    else:
        summary = asyncio.run(
            run_load(
                sc,
                args.target,
                out,
                meters,
                calls=args.calls,
                concurrency=args.concurrency,
                ramp_s=args.ramp,
                max_time_s=args.max_time,
                local=args.local,
            )
        )
    print(format_summary(summary))
    print(f"\nresults: {out}/summary.json   report: {out}/report.html")
    return EXIT_PASSED if summary["failed"] == 0 else EXIT_FAILED


def _report(folder: Path) -> int:
    from callsim.report import format_summary, load_results, write_report

    results = load_results(folder)
    if not results:
        raise ValueError(f"no result.json under {folder}")
    summary = write_report(folder, results, f"callsim report: {folder.name}")
    print(format_summary(summary))
    print(f"\nreport: {folder}/report.html")
    return EXIT_PASSED if summary["failed"] == 0 else EXIT_FAILED


async def _reference(host: str, port: int, delay: float) -> int:
    from callsim.reference import ReferenceTarget

    target = ReferenceTarget(host, delay)
    bound = await target.serve(port)
    print(
        f"reference target: sip:parrot@{host}:{bound} (replies {delay:g} s after the caller stops)",
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    target.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
