"""`voice-agent models`: assemble and verify models ahead of time (the Makefile runs it)."""

from __future__ import annotations

import sys

from agent.config import Config
from agent.engines.base import ModelError
from agent.engines.catalog import CATALOG
from agent.engines.models import ensure, package_file


def _installed(name: str) -> bool:
    spec = CATALOG[name]
    try:
        for pf in spec.parts or ((spec.location,) if spec.location else ()):
            package_file(pf)
    except ModelError:
        return False
    return True


def main(cfg: Config, all_models: bool = False, list_only: bool = False) -> int:
    if list_only:
        for spec in CATALOG.values():
            mark = "installed" if _installed(spec.name) else "not installed"
            print(f"{spec.kind:4} {spec.name:20} {mark:14} {spec.description}")
        return 0
    wanted = {cfg.stt.model, cfg.llm.model, cfg.tts.voice}
    if cfg.vad.engine == "silero":
        wanted.add(cfg.vad.model)
    if all_models:
        wanted |= {name for name in CATALOG if _installed(name)}
    for name in sorted(wanted & CATALOG.keys()):
        path = ensure(CATALOG[name], cfg.models.cache_dir, lambda m: print(m, file=sys.stderr))
        print(f"{name}: {path}")
    return 0
