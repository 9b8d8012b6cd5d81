"""Every training row checked once, before training, on both chat formats (mtl.chat.check_rows):
roles, system turns where the format has one, empty answers dropped and counted, `pertask`
sizes refused on data without tasks. The same cases through the subset step of the workflow,
on a `source: file` dataset, in tests/test_workflow_rows.py."""

from __future__ import annotations

import pytest

from mtl.chat import KEEPS_SYSTEM, ROLES, TULU_TEMPLATE, check_rows
from mtl.paper_standin import byte_tokenizer
from mtl.subsets import select
from mtl.toy_model import build_tokenizer
from mtl.training import IGNORE, encode_chat

FORMATS = sorted(KEEPS_SYSTEM)
SOURCE = "data/mine.jsonl"


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def row(*turns: dict, **fields) -> dict:
    return {"messages": list(turns), **fields}


GOOD = row(turn("user", "add 1 and 2"), turn("assistant", "3"))


def tokenizer_of(chat_format: str):
    if chat_format == "toy":
        return build_tokenizer(["add 1 and 2 3 be brief zebra"])
    return byte_tokenizer(TULU_TEMPLATE, max_length=512)


@pytest.mark.parametrize("chat_format", FORMATS)
def test_the_system_table_is_what_each_template_renders(chat_format: str) -> None:
    messages = [turn("system", "zebra"), *GOOD["messages"]]
    text = tokenizer_of(chat_format).apply_chat_template(messages, tokenize=False)
    assert ("zebra" in text) == KEEPS_SYSTEM[chat_format]


@pytest.mark.parametrize("chat_format", FORMATS)
@pytest.mark.parametrize("role", ["tool", "function", "ipython", "", None])
def test_a_role_outside_system_user_assistant_is_refused_naming_file_and_row(
    chat_format: str, role: str | None
) -> None:
    bad = row(turn("user", "add 1 and 2"), {"role": role, "content": "{}"},
              turn("assistant", "3"), id="r7")
    with pytest.raises(ValueError) as caught:
        check_rows([GOOD, GOOD, bad], SOURCE, chat_format)
    assert f"{SOURCE}:3 (id r7): message 2 has role {role!r}" in str(caught.value)
    assert all(r in str(caught.value) for r in ROLES)


def test_a_system_turn_is_refused_where_the_format_has_none() -> None:
    system = row(turn("system", "be brief"), *GOOD["messages"])
    with pytest.raises(ValueError) as caught:
        check_rows([GOOD, system], SOURCE, "toy")
    message = str(caught.value)
    assert f"{SOURCE}:2: message 1 is a system message, but the toy chat format has no" in message
    assert "tulu" in message  # the way out


def test_a_system_turn_is_kept_and_trained_on_where_the_format_has_one() -> None:
    system = row(turn("system", "be brief"), *GOOD["messages"])
    kept, dropped = check_rows([GOOD, system], SOURCE, "tulu")
    assert kept == [GOOD, system] and dropped == []
    tokenizer = tokenizer_of("tulu")
    (example,) = encode_chat([system], tokenizer, 512, SOURCE)
    assert "<|system|>\nbe brief" in tokenizer.decode(example.input_ids)
    # The system turn is prompt: it carries no loss.
    answer = [t for t, label in zip(example.input_ids, example.labels, strict=True)
              if label != IGNORE]
    assert tokenizer.decode(answer) == "3</s>"


@pytest.mark.parametrize("chat_format", FORMATS)
@pytest.mark.parametrize("answer", ["", " ", "\n\t "])
def test_an_empty_answer_drops_the_row_and_is_counted(chat_format: str, answer: str) -> None:
    empty = row(turn("user", "add 1 and 2"), turn("assistant", answer))
    later = row(*GOOD["messages"], turn("user", "again"), turn("assistant", answer))
    kept, dropped = check_rows([GOOD, empty, GOOD, later], SOURCE, chat_format)
    assert kept == [GOOD, GOOD] and dropped == [2, 4]


@pytest.mark.parametrize("chat_format", FORMATS)
@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (row(turn("user", "add 1 and 2")), "no assistant message"),
        ({"messages": []}, "'messages' must be a non-empty list"),
        ({"messages": "add 1 and 2"}, "'messages' must be a non-empty list"),
        (row(turn("user", "x"), {"role": "assistant", "content": 3}), "message 2 needs a"),
        (row(turn("user", "x"), {"role": "assistant"}), "message 2 needs a"),
    ],
    ids=["no-answer", "no-turns", "turns-not-a-list", "content-not-text", "no-content"],
)
def test_a_malformed_row_is_refused_naming_file_and_row(chat_format, bad, said) -> None:
    with pytest.raises(ValueError) as caught:
        check_rows([GOOD, bad], SOURCE, chat_format)
    assert str(caught.value).startswith(f"{SOURCE}:2: ") and said in str(caught.value)


def test_a_base_models_own_template_is_trusted_with_system_turns() -> None:
    system = row(turn("system", "be brief"), *GOOD["messages"])
    assert check_rows([system], SOURCE, None) == ([system], [])
    with pytest.raises(ValueError, match="chat format 'chatml'"):
        check_rows([system], SOURCE, "chatml")


def test_pertask_on_data_without_tasks_is_refused_naming_the_key_and_dataset() -> None:
    rows = [dict(GOOD, id=str(i)) for i in range(20)]
    where = f"{SOURCE} (dataset science, data.skills.science.sizes)"
    with pytest.raises(ValueError) as caught:
        select(rows, "pertask5", seed=1, origin=where)
    message = str(caught.value)
    assert where in message and "task field 'family'" in message and "row 1 first" in message
    # One row without its task is enough to refuse: it would be a task of its own.
    tasked = [dict(r, family="a" if i % 2 else "b") for i, r in enumerate(rows)]
    tasked[7]["family"] = ""
    with pytest.raises(ValueError, match="row 8 first"):
        select(tasked, "pertask5", seed=1, origin=where)
    # Sizes that ignore tasks still work on such data, and pertask on data with tasks.
    assert len(select(rows, "n5", seed=1)) == 5
    tasked[7]["family"] = "a"
    assert len(select(tasked, "pertask3", seed=1)) == 6
