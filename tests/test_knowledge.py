"""Grounding: the facts picked per turn, the digits read from the caller's words, the prompt."""

from pathlib import Path

import pytest

from agent.dialog.dialplan import Dialplan
from agent.dialog.dialplans import load_dialplan
from agent.dialog.history import History
from agent.dialog.knowledge import terms, vocabulary
from agent.dialog.prompt import NO_FACTS, Prompt, readback, spoken_digits, system_prompt

ROOT = Path(__file__).resolve().parent.parent


def prompt_for(name: str) -> Prompt:
    plan = load_dialplan(ROOT / f"dialplans/examples/{name}.yaml")
    return Prompt(plan, History(system_prompt(plan), 1000))


@pytest.mark.parametrize(
    ("plan", "question", "topic"),
    [
        ("clinic", "Are you guys open on Saturday mornings?", "opening hours"),
        ("clinic", "Um, what do you charge for teeth whitening?", "whitening price"),
        ("clinic", "Hi, do you guys take Meridian Care?", "insurance"),
        ("clinic", "Which of your dentists sees young children?", "dentists"),
        ("restaurant", "Who's your head chef?", "owner and chef"),
        ("restaurant", "Do you guys deliver?", "takeaway and delivery"),
        ("bikeshop", "Um, what do you charge to fix a flat tire?", "flat tire price"),
        ("bikeshop", "Where exactly is the shop?", "address"),
    ],
)
def test_the_fact_that_answers_the_question_is_picked(plan, question, topic):
    picked = prompt_for(plan).knowledge.pick(question)
    assert topic in [e.topic for e in picked], [e.topic for e in picked]


def test_words_no_fact_shares_pick_nothing_and_the_prompt_says_so():
    p = prompt_for("clinic")
    assert p.knowledge.pick("Can you recommend a good movie?") == []
    assert NO_FACTS in p.grounded("Can you recommend a good movie?")


def test_callers_words_fold_onto_the_concepts_facts_use():
    assert {"price", "saturday", "sunday"} <= terms("how much on the weekend")
    assert "hello" not in terms("hello there") and "tire" in terms("tires")


@pytest.mark.parametrize(
    ("said", "digits"),
    [
        ("My number is 4 7 1 9 2.", "4 7 1 9 2"),
        ("my number is four seven one nine two", "4 7 1 9 2"),
        ("It's 555-0199, thanks", "5 5 5 0 1 9 9"),
        ("call me on 47192", "4 7 1 9 2"),
        ("nine oh two one", "9 0 2 1"),
        ("A table for 2 at 8", None),
        ("How much is a 45 dollar tune-up?", None),
    ],
)
def test_a_number_said_in_any_form_is_read_as_single_digits(said, digits):
    assert spoken_digits(said) == digits


def test_each_turn_carries_its_facts_next_to_the_callers_words_after_a_fixed_prefix():
    p = prompt_for("clinic")
    opening = p.opening()
    turn = p.for_turn("Do you take Medicaid?")
    assert turn[: len(opening)] == opening  # llama.cpp reuses the evaluated prefix
    last = turn[-1]["content"]
    assert "Medicaid" in last.split("Caller:")[0]  # the insurance fact
    assert last.endswith("Caller: Do you take Medicaid?")
    assert "digits: 4 7 1 9 2" in p.grounded("my number is four seven one nine two")


def test_dialplans_without_knowledge_keep_their_prompt_as_it_was():
    plan = Dialplan.model_validate({"default": True, "system_prompt": "You run a bike shop, open 9 to 5."})
    p = Prompt(plan, History(system_prompt(plan), 1000))
    assert p.grounded("Are you open on Sunday?") == "Are you open on Sunday?"
    assert len(p.opening()) == 1
    assert "don't know" in system_prompt(plan)


def test_whispers_prompt_names_the_people_brands_and_places_of_the_facts():
    plan = load_dialplan(ROOT / "dialplans/examples/clinic.yaml")
    words = vocabulary(plan)
    assert words.startswith(plan.stt.prompt.rstrip("."))
    for name in ("Meridian Care", "Blue Harbor Health", "Marcus Whitfield", "Lakeview Avenue"):
        assert name in words
    for not_a_name in ("Saturday,", "The ", "Parking"):
        assert not_a_name not in words.removeprefix(plan.stt.prompt.rstrip("."))


def test_the_agent_knows_who_it_is_from_its_persona():
    picked = prompt_for("bikeshop").knowledge.pick("Sorry, who am I speaking with?")
    assert any(e.topic == "who you are" and "Sam" in e.fact for e in picked)


def test_a_number_the_caller_gives_is_read_back_digit_by_digit_without_the_llm():
    assert readback("Can you call me back? My number is 9, 2, 7, 4, 0, 6, 8.") == (
        "That's 9, 2, 7, 4, 0, 6, 8. Is that right?"
    )
    assert readback("my number is four seven one nine two") == "That's 4, 7, 1, 9, 2. Is that right?"
    assert readback("A table for 2 at 8, please.") is None and readback("Room 1204?") is None
