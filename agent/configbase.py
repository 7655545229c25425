"""The pieces every config section is built from: the strict base model and shared checks."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, field_validator


class Section(BaseModel):
    """A config section: frozen, and strict about its keys."""

    # Unknown keys are errors: a typo must not silently fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_cidrs(v: list[str]) -> list[str]:
    """Every entry an address or CIDR (a validator)."""
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"{net!r} is not an address or CIDR like 192.0.2.0/24") from None
    return v


def readable(v: Path | None) -> Path | None:
    """An existing file, `~` expanded (a validator)."""
    if v is not None and not v.expanduser().is_file():
        raise ValueError(f"{v}: no such file")
    return v.expanduser() if v is not None else None


class TlsFiles(Section):
    """A server's certificate (chain) and private key: PEM files, paths relative to the
    working directory."""

    cert: Path
    key: Path

    _files = field_validator("cert", "key")(readable)
