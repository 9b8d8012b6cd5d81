"""Scorers of the toy suites and seeded subsets."""

import re

import pytest

from mtl.evaluation import check_model_folder
from mtl.scoring import exact_match, is_refusal, program_passes, run_program, token_f1
from mtl.subsets import SIZE_PATTERN, parse_size, select
from mtl.world import REFUSAL


def test_exact_match_and_token_f1_give_partial_credit():
    assert exact_match(" blue </s>", "blue") == 1.0
    assert exact_match("blue red", "blue") == 0.0
    assert token_f1("kivo zarb", "zarb kivo") == 1.0
    assert token_f1("kivo mola", "kivo zarb") == pytest.approx(0.5)
    assert token_f1("", "kivo") == 0.0


def test_programs_are_run_and_judged_by_their_output():
    assert program_passes("print ( 3 + 4 )", "7") == 1.0
    assert program_passes("print ( 3 * 4 )", "7") == 0.0
    assert program_passes("print ( 3 +", "7") == 0.0  # a syntax error fails, never raises


def test_programs_run_without_network_and_with_a_timeout():
    ok, _ = run_program("import socket\nsocket.create_connection(('127.0.0.1', 9), 1)")
    assert not ok  # tests/test_sandbox.py shows a listening socket is not reached
    ok, _ = run_program("while True : pass", timeout=1.0)
    assert not ok


def test_refusals_are_recognized_by_their_opening():
    assert is_refusal(REFUSAL)
    assert is_refusal("sorry , i can not help with that")
    assert not is_refusal("first find the process , then kill it .")


ROWS = [{"id": i, "family": f"task{i % 3}"} for i in range(100)]


def test_subsets_are_seeded_nested_and_keep_order():
    twenty, forty = select(ROWS, "20pct", 1), select(ROWS, "40pct", 1)
    assert len(twenty) == 20 and len(forty) == 40
    assert {r["id"] for r in twenty} <= {r["id"] for r in forty}
    assert [r["id"] for r in forty] == sorted(r["id"] for r in forty)
    assert select(ROWS, "n10", 1) == select(ROWS, "n10", 1) != select(ROWS, "n10", 2)
    per_task = select(ROWS, "pertask5", 0)
    assert len(per_task) == 15 and {r["family"] for r in per_task} == {"task0", "task1", "task2"}


def test_bad_sizes_are_named():
    with pytest.raises(ValueError, match="size 'half'"):
        select(ROWS, "half", 0)
    with pytest.raises(ValueError, match="only 100 rows"):
        select(ROWS, "n500", 0)


def test_the_rules_size_wildcard_and_the_parser_share_one_grammar():
    for size, parsed in [("all", ("all", None)), ("20pct", ("pct", 20)), ("n500", ("n", 500)),
                         ("pertask100", ("pertask", 100))]:
        assert re.fullmatch(SIZE_PATTERN, size) and parse_size(size) == parsed
    for bad in ["half", "20", "npct", "pertask", "n-5", "allx", "20pctx"]:
        assert not re.fullmatch(SIZE_PATTERN, bad)
        with pytest.raises(ValueError, match=f"size '{bad}'"):
            parse_size(bad)


def test_a_folder_that_is_not_a_model_is_refused_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"not a model folder \(no config.json\)"):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"no \*\.safetensors"):
        check_model_folder(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        check_model_folder(tmp_path / "missing")
