"""Config: defaults, the shipped config.yaml, and errors that name file, line and field."""

from pathlib import Path

import pytest

from agent.config import Config, load_config
from agent.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_is_valid_and_matches_defaults():
    cfg = load_config(ROOT / "config.yaml")
    assert cfg == Config()


def test_unknown_key_names_file_line_and_field(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("llm:\n  n_ctx: 1024\n  max_tokenz: 50\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    assert f"{f}:3: llm.max_tokenz: Extra inputs are not permitted" in str(err.value)


def test_every_problem_is_reported_at_once(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("vad:\n  engine: magic\nstt:\n  beam_size: 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert f"{f}:2: vad.engine" in msg
    assert f"{f}:4: stt.beam_size" in msg


def test_invalid_yaml_names_the_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("llm:\n  n_ctx: [1, 2\n")
    with pytest.raises(ConfigError, match=r"c\.yaml:\d+: invalid YAML"):
        load_config(f)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


def test_empty_file_gives_defaults_and_cache_dir_expands_home(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("")
    assert load_config(f) == Config()
    f.write_text("models:\n  cache_dir: ~/models\n")
    assert load_config(f).models.cache_dir == Path.home() / "models"


def test_tls_needs_readable_files_and_no_edge(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("sip:\n  tls:\n    cert: nope.pem\n    key: nope.key\n  srtp: always\n")
    with pytest.raises(ConfigError) as err:
        load_config(f)
    msg = str(err.value)
    assert f"{f}:3: sip.tls.cert: Value error, nope.pem: no such file" in msg
    assert f"{f}:4: sip.tls.key" in msg and f"{f}:5: sip.srtp" in msg
    (tmp_path / "c.pem").write_text("x")
    f.write_text(f"sip:\n  edge: true\n  tls:\n    cert: {tmp_path}/c.pem\n    key: {tmp_path}/c.pem\n")
    with pytest.raises(ConfigError, match="tls is ended by the agent itself"):
        load_config(f)
    f.write_text("sip:\n  srtp: off\n")
    assert load_config(f).sip.srtp == "off"
