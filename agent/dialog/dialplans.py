"""The dialplans of a folder: loading them (every problem of every file reported together,
with file and line), the checks across files, and which dialplan answers a called user."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from agent.dialog.dialplan import Dialplan
from agent.yamlconf import ConfigError, load_yaml, validate


class Dialplans:
    """All dialplans of a folder; `for_user` picks the one that answers a called user."""

    def __init__(self, plans: list[Dialplan]) -> None:
        defaults = [p for p in plans if p.default]
        if len(defaults) > 1:
            names = ", ".join(p.name for p in defaults)
            raise ConfigError(f"more than one dialplan has `default: true`: {names}")
        self.plans = plans
        self.default = defaults[0] if defaults else None

    def for_user(self, user: str) -> Dialplan | None:
        for plan in self.plans:
            if plan.matches(user):
                return plan
        return self.default

    @property
    def trunk_only(self) -> bool:
        """Some dialplan takes calls from its trunks only."""
        return any(p.access.trunks for p in self.plans)

    @property
    def voices(self) -> set[str]:
        return {p.voice for p in self.plans if p.voice}


def load_dialplan(path: Path) -> Dialplan:
    data, lines = load_yaml(path)
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}
    plan = validate(Dialplan, data, path, lines)
    transfer = plan.tools.transfer
    if transfer is not None and transfer.hold_audio != "tone":  # a file beside the dialplan
        audio = (path.parent / transfer.hold_audio).resolve()
        if not audio.is_file():
            raise ConfigError(f"{path}: tools.transfer.hold_audio: {transfer.hold_audio}: no such file")
        transfer = transfer.model_copy(update={"hold_audio": str(audio)})
        plan = plan.model_copy(update={"tools": plan.tools.model_copy(update={"transfer": transfer})})
    return plan


def load_dialplans(folder: Path, trunks: Collection[str] = ()) -> Dialplans:
    """Load every *.yaml in `folder`; all problems of all files are reported together. `trunks`:
    the names in sip.trunks, which `access.trunks` may name."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: dialplan folder not found (set dialplans.dir in the config)")
    plans: list[Dialplan] = []
    problems: list[str] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            plans.append(load_dialplan(path))
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if unknown := sorted(set(plans[-1].access.trunks) - set(trunks)):
            problems.append(f"{path}: access.trunks: {unknown[0]!r} is not in the config's sip.trunks")
    if problems:
        raise ConfigError("\n".join(problems))
    if not plans:
        raise ConfigError(f"{folder}: no dialplans (*.yaml) found")
    names = [p.name for p in plans]
    if dup := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"{folder}: dialplan names must be unique: {', '.join(dup)}")
    for p in plans:  # a menu key may hand the call to another dialplan: it must exist
        for key, o in (p.menu.options if p.menu else {}).items():
            if o.dialplan is not None and o.dialplan not in names:
                raise ConfigError(f"{folder}: dialplan {p.name}: menu key {key}: no dialplan {o.dialplan!r}")
    return Dialplans(plans)
