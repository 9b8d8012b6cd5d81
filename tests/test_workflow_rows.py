"""Training rows from a user's file (`source: file`) are checked as the world's and the hub's
are, by the subset step, before any training: on the toy chat format (config/test.yaml) and on
Tülu's (config/standin.yaml, paper scale). Each refusal names the file and the row; rows with an
empty answer are dropped and counted in the subset's record and the training record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from workflow import TEST_CONFIG, copy_repo, seeded, snakemake

pytestmark = pytest.mark.slow

MINE = "data/mine.jsonl"
STANDIN = ["--configfile", "config/standin.yaml"]


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def qa(i: int, *extra: dict, answer: str | None = None) -> dict:
    return {"id": f"q{i}", "messages": [*extra, turn("user", f"question {i}"),
                                        turn("assistant", f"answer {i}" if answer is None
                                             else answer)]}


def _repo(tmp_path: Path, rows: list[dict]) -> tuple[Path, str]:
    repo = copy_repo(tmp_path / "repo")
    (repo / MINE).parent.mkdir(parents=True, exist_ok=True)
    (repo / MINE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    override = tmp_path / "mine.yaml"
    override.write_text(yaml.safe_dump(
        {"data": {"skills": {"science": {"source": "file", "path": MINE}}}}))
    return repo, str(override)


def _subset(repo: Path, size: str, *configs: str) -> tuple[int, str]:
    done = snakemake(repo, f"results/data/science/{size}.jsonl", "--cores", "1", *configs,
                     check=False)
    log = repo / f"results/logs/subset/science-{size}.log"
    return done.returncode, (log.read_text() if log.exists() else "") + done.stderr


@pytest.mark.parametrize("configs", [TEST_CONFIG, STANDIN], ids=["toy", "tulu"])
def test_a_tool_turn_in_a_users_file_stops_naming_file_and_row(tmp_path, configs):
    rows = [qa(1), qa(2), qa(3, turn("tool", "{}")), qa(4)]
    repo, override = _repo(tmp_path, rows)
    code, log = _subset(repo, "all", *configs, override)
    assert code != 0
    assert f"{MINE}:3 (id q3): message 1 has role 'tool'" in log, log[-3000:]
    assert not (repo / "results/data/science/all.jsonl").exists()


def test_a_system_turn_is_refused_by_the_toy_format_and_kept_by_tulus(tmp_path):
    rows = [qa(1), qa(2, turn("system", "be brief")), qa(3)]
    repo, override = _repo(tmp_path, rows)
    code, log = _subset(repo, "all", *TEST_CONFIG, override)
    assert code != 0
    assert f"{MINE}:2 (id q2): message 1 is a system message, but the toy chat format" in log

    code, log = _subset(repo, "all", *STANDIN, override)
    assert code == 0, log[-3000:]
    kept = [json.loads(line) for line in
            (repo / "results/data/science/all.jsonl").read_text().splitlines()]
    assert kept == rows


def test_empty_answers_are_dropped_and_counted(tmp_path):
    rows = [qa(1), qa(2, answer=""), qa(3), qa(4, answer="  \n"), qa(5)]
    repo, override = _repo(tmp_path, rows)
    code, log = _subset(repo, "all", *TEST_CONFIG, override)
    assert code == 0, log[-3000:]
    assert f"{MINE}: 2 row(s) dropped for an empty answer: rows 2, 4" in log
    subset = repo / "results/data/science/all.jsonl"
    assert [json.loads(line)["id"] for line in subset.read_text().splitlines()] == [
        "q1", "q3", "q5"]
    notes = json.loads(Path(f"{subset}.prov.json").read_text())["notes"]
    assert notes["dropped_empty_answers"] == 2 and notes["n_source"] == 5


def test_pertask_on_a_file_without_tasks_is_refused_naming_key_and_dataset(tmp_path):
    repo, override = _repo(tmp_path, [qa(i) for i in range(12)])
    code, log = _subset(repo, "pertask5", *TEST_CONFIG, override)
    assert code != 0
    assert (f"size pertask5 draws 5 rows per task, but {MINE} (dataset science,"
            " data.skills.science.sizes) has no task field 'family' (row 1 first)") in log


def test_the_training_record_states_the_rows_dropped(toy_run):
    # A model table 5's run trains (the session's toy_run builds no RT model).
    record = json.loads((toy_run / f"{seeded('models', 'ptm-science-all')}.prov.json").read_text())
    assert record["notes"]["dropped_empty_answers"] == {"results/data/science/all.jsonl": 0}
