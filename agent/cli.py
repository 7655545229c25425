"""`voice-agent` command line: serve, check, models, calls, call, keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from agent.config import Config, load_config
from agent.engines.base import EngineError
from agent.errors import StartupError
from agent.observe import setup_logging
from agent.yamlconf import ConfigError


def _offline() -> None:
    """Nothing may reach a model hub: every model comes from an installed package or a path.
    Set when the command runs (not at import), before any engine library is imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="voice-agent", description="Offline phone voice agent.")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", type=Path, default=None, help="YAML config (default: built-in defaults)")
        sp.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
        sp.add_argument("--log-format", choices=["auto", "json", "console"])
        return sp

    serve = with_config(sub.add_parser("serve", help="run the agent until SIGINT/SIGTERM"))
    serve.add_argument("--sip", metavar="HOST:PORT", help="SIP bind address (overrides sip.host/port)")
    serve.add_argument("--http", metavar="HOST:PORT", help="HTTP bind address (overrides http.host/port)")
    serve.add_argument("--worker", metavar="PORT:CALLS", help=argparse.SUPPRESS)  # set by the cluster
    check = with_config(sub.add_parser("check", help="load every engine and run one round trip"))
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    models = with_config(sub.add_parser("models", help="assemble and verify the models the config uses"))
    models.add_argument("--all", action="store_true", help="every catalog model whose packages are installed")
    models.add_argument("--list", action="store_true", help="list the catalog and exit")
    calls = with_config(sub.add_parser("calls", help="list recorded calls, newest first"))
    calls.add_argument("--since", help="e.g. 2h, 7d, 2026-12-01 or 2026-12-01T09:00:00Z")
    calls.add_argument("--limit", type=int, default=50)
    calls.add_argument("--json", action="store_true", help="one JSON record per line")
    call = with_config(sub.add_parser("call", help="place an outgoing call through the running agent"))
    call.add_argument("to", help="sip:, sips: or tel: URI")
    call.add_argument("--dialplan", required=True)
    call.add_argument("--var", action="append", default=[], metavar="NAME=VALUE", help="a dialplan variable")
    call.add_argument("--no-amd", action="store_true", help="no answering-machine detection")
    call.add_argument("--key", help="API key with calls:write (default: $VOICE_AGENT_API_KEY)")
    call.add_argument("--wait", action="store_true", help="follow the call until it ends; print its result")
    call.add_argument("--timeout", type=float, default=600.0, help="of --wait, in seconds")
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = with_config(
        keys.add_parser("create", help="make a key, kept (hashed) in the store; printed once")
    )
    create.add_argument("--name", required=True)
    create.add_argument("--scope", required=True, help="comma-separated: calls:read,calls:write,speech")
    revoke = with_config(keys.add_parser("revoke", help="end a key made by `keys create`"))
    revoke.add_argument("--name", required=True)
    with_config(keys.add_parser("list", help="the keys made by `keys create`"))
    return p


def _load(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    log = cfg.log.model_copy(
        update={k: v for k, v in (("level", args.log_level), ("format", args.log_format)) if v}
    )
    setup_logging(log.level, log.format)
    cfg = cfg.model_copy(update={"log": log})
    if getattr(args, "sip", None):
        host, port = _host_port(args.sip, "--sip")
        cfg = cfg.model_copy(update={"sip": cfg.sip.model_copy(update={"host": host, "port": port})})
    if getattr(args, "http", None):
        host, port = _host_port(args.http, "--http")
        cfg = cfg.model_copy(update={"http": cfg.http.model_copy(update={"host": host, "port": port})})
    if getattr(args, "worker", None):
        cfg = _as_worker(cfg, args.worker)
    return cfg


def _as_worker(cfg: Config, spec: str) -> Config:
    """A cluster worker: SIP on 127.0.0.1:PORT behind the Kamailio front, RTP where it was."""
    from agent.telephony.kamailio import CALLER_HEADER

    port, _, calls = spec.partition(":")
    sip = cfg.sip
    index = int(port) - (sip.worker_port or sip.port + 1)
    first = index == 0
    front = f"{sip.public_address or sip.host}:{sip.port}"
    update = {
        "host": "127.0.0.1",
        "port": int(port),
        "transports": ["udp"],
        "max_calls": int(calls),
        "media_host": sip.media_host or sip.host,
        # One registration for the whole cluster, with the front's address as Contact.
        "registration": sip.registration if first else None,
        "contact": f"<sip:agent@{front}>" if first and sip.registration else None,
        # Every INVITE comes from the front: per-source limits and the allow-list are applied
        # there (a worker sees every caller as 127.0.0.1).
        "limits": sip.limits.model_copy(update={"trusted": [*sip.limits.trusted, "127.0.0.1/32"]}),
        "access": sip.access.model_copy(update={"allow": [], "auth": None}),
        "caller_header": CALLER_HEADER,  # the caller's address, for dialplans' trunk rules
        "edge": False,
        "outbound_proxy": f"sip:127.0.0.1:{sip.port};lr",  # its own calls leave through the front
    }
    http = cfg.http.model_copy(update={"port": cfg.http.port + 1 + index if cfg.http.port else 0})
    return cfg.model_copy(update={"sip": sip.model_copy(update=update), "http": http})


def _serve(cfg: Config, args: argparse.Namespace) -> None:
    sip = cfg.sip
    if sip.enabled and not args.worker and (sip.edge or sip.max_calls > sip.calls_per_process):
        from agent.cluster import Cluster

        forwarded = {
            "--config": args.config,
            "--log-level": args.log_level,
            "--log-format": args.log_format,
            "--sip": args.sip,
            "--http": args.http,
        }
        argv = [x for flag, value in forwarded.items() if value for x in (flag, str(value))]
        asyncio.run(Cluster(cfg, argv).run())
        return
    from agent.server import Server

    asyncio.run(Server(cfg).run())  # raises StartupError when SIP died under it (exit 2: restart)


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag} wants HOST:PORT, e.g. 127.0.0.1:5060, not {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> int:
    _offline()
    args = _parser().parse_args(argv)
    try:
        cfg = _load(args)
        if args.command == "keys":
            from agent.api.keystore import main as keys_main

            return keys_main(cfg.store.db_path, args.keys_command, getattr(args, "name", ""),
                             getattr(args, "scope", ""))  # fmt: skip
        if args.command == "serve":
            _serve(cfg, args)
            return 0
        if args.command == "calls":
            from agent.records.listing import main as calls_main

            return calls_main(cfg, args.since, args.json, args.limit)
        if args.command == "call":
            from agent.api.client import main as call_main

            return call_main(cfg, args.to, args.dialplan, args.var, not args.no_amd, args.key, args.wait,
                             args.timeout)  # fmt: skip
        if args.command == "check":
            from agent.check import main as check_main

            return check_main(cfg, args.json)
        from agent.engines.modelcli import main as models_main

        return models_main(cfg, all_models=args.all, list_only=args.list)
    except (ConfigError, EngineError, StartupError) as exc:
        print(f"voice-agent: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
