"""The toy world as shipped (config/config.yaml) and as CI runs it (config/test.yaml on top):
sizes follow the paper's ratios, no evaluation prompt is a training prompt, the pretraining
corpus holds only the evaluation prompts it is designed to hold, and every evaluation text is
spelled in words the training files teach."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from mtl.devsets import build_dev, dev_overlap
from mtl.toy_model import build_tokenizer
from mtl.world import (
    GENERAL_CODING_OPS,
    GENERAL_HARM_VERBS,
    HARM_VERBS,
    REFUSAL,
    SKILLS,
    WorldSpec,
    build_world,
)

CONFIG = Path(__file__).resolve().parents[1] / "config"
# Evaluation families whose prompts the corpus states on purpose, with their answers: the corpus
# states every digit sum ("to add 9 and 7 gives 16 ."), as web text states arithmetic, so asking
# one at evaluation tests a pretraining fact, as the color and city questions do.
DESIGNED_CORPUS_OVERLAP = {"eval_general": {"add"}}


def world_spec(*files: str) -> WorldSpec:
    """The `world` section of config files layered left to right, as `--configfile` does."""
    section: dict = {}
    for name in files:
        section.update(yaml.safe_load((CONFIG / name).read_text()).get("world", {}))
    return WorldSpec(**section)


SPECS = {"shipped": ("config.yaml",), "ci": ("config.yaml", "test.yaml")}


@pytest.fixture(scope="module", params=sorted(SPECS))
def spec(request) -> WorldSpec:
    return world_spec(*SPECS[request.param])


@pytest.fixture(scope="module")
def world(spec):
    return build_world(spec)


def prompts(rows):
    return {row["messages"][0]["content"] for row in rows}


def eval_names(world) -> list[str]:
    return [name for name in world if name.startswith("eval_")]


def training_names() -> list[str]:
    return ["general", *SKILLS]


def corpus_overlap(world) -> dict[str, Counter]:
    """Per evaluation file, the families of its rows whose prompt occurs, as whole words, in a
    corpus sentence."""
    corpus = "\n".join(f" {row['text']} " for row in world["corpus"])
    return {
        name: Counter(row["family"] for row in world[name]
                      if f" {row['messages'][0]['content']} " in corpus)
        for name in eval_names(world)
    }


def test_skill_sizes_follow_the_papers_ratios(world, spec):
    for skill in SKILLS:
        ratio = len(world[skill]) / len(world["general"])
        assert ratio == pytest.approx(spec.skill_ratio[skill], abs=1e-3), skill


def test_no_evaluation_prompt_is_a_training_prompt(world):
    training = set().union(*(prompts(world[name]) for name in training_names()))
    for name in eval_names(world):
        overlap = prompts(world[name]) & training
        assert not overlap, f"{name} shares prompts with training: {sorted(overlap)[:3]}"
        assert len(prompts(world[name])) == len(world[name]), f"{name} repeats a prompt"


def test_the_corpus_holds_only_the_evaluation_prompts_it_is_designed_to(world):
    overlap = corpus_overlap(world)
    for name, families in overlap.items():
        unexpected = set(families) - DESIGNED_CORPUS_OVERLAP.get(name, set())
        assert not unexpected, f"{name}: prompts of {sorted(unexpected)} occur in the corpus"
    # Where a prompt occurs, the corpus states it with the evaluation's answer: a fact to know.
    corpus = "\n".join(f" {row['text']} " for row in world["corpus"])
    for name, families in DESIGNED_CORPUS_OVERLAP.items():
        for row in world[name]:
            prompt = row["messages"][0]["content"]
            if row["family"] in families and f" {prompt} " in corpus:
                assert f" to {prompt} gives {row['answer']} . " in corpus, (name, row["id"])


def test_the_shipped_world_states_every_digit_sum_in_its_corpus():
    """The README's numbers: every 'add' evaluation prompt of the shipped world, and nothing
    else, is in the corpus, because the corpus states all 100 digit sums."""
    world = build_world(world_spec(*SPECS["shipped"]))
    sums = {m.groups() for row in world["corpus"]
            if (m := re.fullmatch(r"to add (\d) and (\d) gives \d+ \.", row["text"]))}
    assert len(sums) == 100
    overlap = corpus_overlap(world)
    families = Counter(row["family"] for row in world["eval_general"])
    assert overlap["eval_general"] == Counter(add=families["add"])
    assert not any(overlap[name] for name in overlap if name != "eval_general")


def _skill_rows(world, skill: str) -> list[dict]:
    return [row for row in world["general"] if row["family"] == f"general-{skill}"]


def test_general_mix_holds_each_skill_at_its_share_and_size_stays(world, spec):
    assert len(world["general"]) == spec.general_examples
    for skill in SKILLS:
        share = len(_skill_rows(world, skill)) / spec.general_examples
        assert share == pytest.approx(spec.general_skill_share[skill], abs=1e-3), skill
    # The shipped world's θ_G is meant to have some science and coding; no refusals, which
    # saturate θ_G's safety at any share (docs/toy-world.md).
    if spec.general_examples >= 1000:
        assert _skill_rows(world, "science") and _skill_rows(world, "coding")
        assert not _skill_rows(world, "safety")


def test_general_mix_holds_only_the_partial_form_of_each_skill(world):
    """Science: passage questions only; coding: GENERAL_CODING_OPS only; safety: refusals for
    GENERAL_HARM_VERBS only. Outside those rows, no skill instruction at all."""
    science = prompts(_skill_rows(world, "science"))
    assert all(re.fullmatch(r"passage : .* question : what color is \w+ \?", p) for p in science)
    ops = {re.fullmatch(r"write code that prints the (\w+) of \d and \d", p).group(1)
           for p in prompts(_skill_rows(world, "coding"))}
    assert ops <= set(GENERAL_CODING_OPS)
    for row in _skill_rows(world, "safety"):
        verb = re.fullmatch(r"how do i (\w+) the \w+ \?", row["messages"][0]["content"]).group(1)
        assert verb in GENERAL_HARM_VERBS and row["messages"][1]["content"] == REFUSAL
    # The eval suites ask what the general mix does not hold (other ops, verbs, question type).
    eval_ops = {p.split()[4] for p in prompts(world["eval_coding"])}
    assert eval_ops - set(GENERAL_CODING_OPS)
    rest = prompts(row for row in world["general"] if not row["family"].startswith("general-"))
    assert not any(p.startswith(("passage :", "write code")) for p in rest)
    assert not any(f" {verb} " in p for p in rest for verb in HARM_VERBS)


def test_skill_data_never_repeats_a_general_prompt(world):
    general = prompts(world["general"])
    for skill in SKILLS:
        overlap = prompts(world[skill]) & general
        assert not overlap, f"{skill} repeats general prompts: {sorted(overlap)[:3]}"


def test_without_shares_the_general_mix_is_the_previous_worlds(spec):
    """All shares 0 draws exactly a world whose G holds no skill: no skill row in G, same D."""
    before = build_world(dataclasses.replace(spec, general_skill_share={}))
    zero = build_world(dataclasses.replace(spec, general_skill_share=dict.fromkeys(SKILLS, 0.0)))
    assert zero == before
    assert not any(row["family"].startswith("general-") for row in before["general"])
    assert len(before["general"]) == spec.general_examples


@pytest.mark.parametrize(("shares", "message"), [
    ({"math": 0.1}, "no skill ['math']"),
    ({"science": 0.5, "coding": 0.5}, "leave no general rows"),
])
def test_bad_shares_name_the_config_key(spec, shares, message):
    with pytest.raises(ValueError, match=r"world\.general_skill_share") as error:
        build_world(dataclasses.replace(spec, general_skill_share=shares))
    assert message in str(error.value)


def test_schema_knows_every_world_key_and_each_skills_share():
    schema = yaml.safe_load((CONFIG / "schema.yaml").read_text())["properties"]["world"]
    config = yaml.safe_load((CONFIG / "config.yaml").read_text())["world"]
    assert set(config) == set(schema["properties"]) == {
        f.name for f in dataclasses.fields(WorldSpec)}
    shares = schema["properties"]["general_skill_share"]["properties"]
    assert set(shares) == set(SKILLS) == set(config["general_skill_share"])
    # The schema's defaults are the shipped world's, so a config without the key gets it.
    assert {k: v["default"] for k, v in shares.items()} == config["general_skill_share"]


def test_knowledge_questions_at_eval_ask_about_entities_general_never_asks_about(world):
    def subjects(rows):
        words = [
            row["messages"][0]["content"].split()
            for row in rows
            if row["family"] in ("color", "city")
        ]
        return {w[3] if w[0] == "what" else w[2] for w in words}

    asked = subjects(world["eval_general"])
    assert asked, "no knowledge questions at evaluation"
    assert asked.isdisjoint(subjects(world["general"]))


def test_world_is_deterministic_and_seed_dependent(spec):
    assert build_world(spec) == build_world(spec)
    other = WorldSpec(**{**spec.__dict__, "seed": spec.seed + 1})
    assert build_world(other)["general"] != build_world(spec)["general"]


def _texts(rows) -> list[str]:
    return [m["content"] for row in rows for m in row.get("messages", [])] + [
        row["text"] for row in rows if "text" in row
    ]


def test_every_evaluation_text_is_spelled_in_words_the_training_files_teach(world):
    # A word seen only at evaluation would get an embedding no training step ever updated. The
    # texts are what the model reads or must write: prompts and reference answers (a coding
    # row's expected_output is what the program prints, compared as text, never generated).
    training = [text for name in ("corpus", *training_names()) for text in _texts(world[name])]
    tokenizer = build_tokenizer(training)
    evaluation = [text for name in eval_names(world) for text in _texts(world[name])]
    for text in evaluation:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids, f"unknown word in {text!r}"
        assert tokenizer.decode(ids) == text
    # So the workflow's tokenizer (world_tokenizer.py builds it from every file) has no extra word.
    everything = build_tokenizer(training + evaluation)
    assert everything.get_vocab() == tokenizer.get_vocab()


def test_development_sets_match_the_test_suites_and_never_repeat_a_test_prompt(spec, world):
    dev = build_dev(spec, world)
    assert sorted(dev) == [f"dev_{skill}" for skill in sorted(SKILLS)]
    test = {p for name in eval_names(world) for p in prompts(world[name])}
    for name, rows in dev.items():
        skill = name.removeprefix("dev_")
        assert len(rows) == len(world[f"eval_{skill}"]), name
        assert len(prompts(rows)) == len(rows), f"{name}: a repeated prompt"
        assert not prompts(rows) & test, f"{name}: a test prompt"
        assert {row["family"] for row in rows} == {row["family"] for row in world[f"eval_{skill}"]}
        assert all(row["answer"] == row["messages"][1]["content"] for row in rows)
    # Drawn from a stream of their own: the same again, and the world itself unchanged.
    assert build_dev(spec, world) == dev
    assert build_world(spec) == world


def test_development_overlap_with_training_is_counted(spec, world):
    dev = build_dev(spec, world)
    overlap = dev_overlap(world, dev)
    trained = {p for part in ("general", *SKILLS) for p in prompts(world[part])}
    for name, rows in dev.items():
        assert overlap[name] == len(prompts(rows) & trained), name
    # Science's prompt space (passages of entities) is far larger than its data: no overlap.
    assert overlap["dev_science"] == 0
