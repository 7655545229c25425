"""Dialplans: the shipped ones load, bad ones fail at start-up naming file, line and field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.dialog.chunker import Chunker
from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import load_dialplans
from agent.dialog.history import History
from agent.dialog.speakable import speakable
from agent.dialog.tools import Hangup, Transfer, action_from_phrase
from agent.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_dialplans_load_and_route():
    plans = load_dialplans(ROOT / "dialplans")
    assert plans.for_user("echo").kind == "echo"
    default = plans.for_user("+4930123456")
    assert default.name == "default" and default.greeting and default.tools.hangup and default.tools.transfer
    assert "front_desk" in default.tools.transfer.targets


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_errors_name_file_line_and_field(tmp_path):
    write(tmp_path, "a.yaml", "default: true\nturn:\n  end_silence_ms: 50\n  speculative_ms: 10\n")
    write(
        tmp_path,
        "b.yaml",
        "match: [sales]\ntools:\n  transfer:\n    targets:\n      desk:\n        uri: http://x\n",
    )
    write(tmp_path, "c.yaml", "match: [x]\ngreting: hello\n")
    write(
        tmp_path,
        "d.yaml",
        "match: [y]\ntools:\n  transfer:\n    say: To {name}\n    targets: {a: {uri: 'sip:a@h'}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_dialplans(tmp_path)
    text = str(err.value)
    assert f"{tmp_path / 'a.yaml'}:3: turn.end_silence_ms:" in text
    assert f"{tmp_path / 'b.yaml'}:6: tools.transfer.targets.desk.uri:" in text
    assert f"{tmp_path / 'c.yaml'}:2: greting: Extra inputs are not permitted" in text
    assert f"{tmp_path / 'd.yaml'}:4: tools.transfer.say: Value error, the only placeholder" in text


def test_two_defaults_no_match_and_an_empty_folder_are_errors(tmp_path):
    write(tmp_path, "a.yaml", "default: true\n")
    write(tmp_path, "b.yaml", "default: true\n")
    with pytest.raises(ConfigError, match="more than one dialplan has `default: true`: a, b"):
        load_dialplans(tmp_path)
    write(tmp_path / "c", "x.yaml", "greeting: hi\n")
    with pytest.raises(ConfigError, match="needs `match` patterns or `default: true`"):
        load_dialplans(tmp_path / "c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match="no dialplans"):
        load_dialplans(tmp_path / "d")


def test_serve_refuses_to_start_with_a_broken_dialplan(tmp_path):
    write(tmp_path / "plans", "bad.yaml", "default: true\nsilence:\n  reprompt_after_s: -1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"dialplans:\n  dir: {tmp_path / 'plans'}\nsip:\n  enabled: false\nhttp:\n  enabled: false\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(cfg)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.returncode == 2
    assert f"{tmp_path / 'plans' / 'bad.yaml'}:3: silence.reprompt_after_s:" in proc.stderr


def test_caller_phrases_trigger_tools_on_whole_words_only():
    tools = Dialplan.model_validate(
        {
            "default": True,
            "tools": {
                "hangup": {"phrases": ["bye"]},
                "transfer": {"targets": {"desk": {"uri": "sip:d@h", "phrases": ["real person"]}}},
            },
        }
    ).tools
    assert action_from_phrase("OK, bye!", tools) == Hangup()
    assert action_from_phrase("I'd like to buy a bike", tools) is None
    assert action_from_phrase("Can I talk to a real person?", tools) == Transfer("desk", "sip:d@h", "desk")


def test_chunker_cuts_early_strips_markdown_and_takes_tags():
    tools = Dialplan.model_validate({"default": True, "tools": {"hangup": {}}}).tools
    c = Chunker(tools)
    out: list[str] = []
    for piece in ["**Sure**", ", I can", " help.", " We close at 6pm", " today. Goodbye! [hang", "up]"]:
        out += c.feed(piece)
    out += c.finish()
    assert out == ["Sure,", "I can help.", "We close at 6 P M today.", "Goodbye!"]
    assert c.actions == [Hangup()]


def test_a_first_chunk_without_a_break_is_cut_after_a_few_words_never_before_a_unit():
    c = Chunker(Dialplan.model_validate({"default": True}).tools)
    text = "The checkup and cleaning costs 95 dollars for adults and 60 dollars for children."
    out = [chunk for word in text.split(" ") for chunk in c.feed(word + " ")] + c.finish()
    assert out == ["The checkup and cleaning costs", "95 dollars for adults and 60 dollars for children."]


def test_speakable_text():
    assert speakable("- **Tune-up**: $45.50 (10% off) at shop@example.com") == (
        "Tune-up: 45 dollars 50 (10 percent off) at shop at example dot com"
    )
    assert (
        speakable("Open 9:30am–5pm, see https://x.example/hours 😀") == "Open 9 30 A M–5 P M, see our website"
    )


def test_history_keeps_the_system_prompt_and_drops_the_oldest_turns():
    h = History("system", budget_tokens=30)
    for i in range(10):
        h.add_user(f"question number {i} " * 3)
        h.add_agent(f"answer number {i} " * 3)
    msgs = h.messages()
    assert msgs[0] == {"role": "system", "content": "system"}
    assert msgs[1]["role"] == "user" and "9" in msgs[-1]["content"] and h.dropped > 0
    assert sum(len(m["content"]) // 4 + 1 for m in msgs[1:]) <= 30


def test_numbers_are_read_digit_by_digit_amounts_and_years_are_not():
    assert speakable("Your number is 085614.") == "Your number is 0 8 5 6 1 4."
    assert speakable("Call 555-0199.") == "Call 5 5 5, 0 1 9 9."
    assert speakable("Order 41792 is ready") == "Order 4 1 7 9 2 is ready"
    assert speakable("Since 2009, a tune-up is $45.") == "Since 2009, a tune-up is 45 dollars."
