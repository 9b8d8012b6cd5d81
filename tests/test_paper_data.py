"""Paper-scale training data: filters and caps, expected counts at fetch, truncation that drops
rows without an answer, hub pins and lock files, and ω beside the paper's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtl.omega import expected_rows, omega_params, plan, skill_omegas
from mtl.paper_compare import compare, omega_columns, read_reference
from mtl.pins import lock_path, resolve
from mtl.sources import check_expected, normalize
from mtl.toy_model import build_tokenizer
from mtl.training import IGNORE, encode_chat

REPO = Path(__file__).resolve().parent.parent
PAPER = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
SCIRIFF_EVAL = ["bioasq_list_qa", "biored_ner", "discomat_te", "evidence_inference",
                "multicite_intent_classification", "mup_single_document_summarization",
                "qasper_abstractive_qa", "scierc_ner", "scifact_entailment"]


# ---- filters and caps ----------------------------------------------------------------------

def sciriff_rows(tasks: dict[str, int]) -> list[dict]:
    return [{"input": f"q {task} {i}", "output": f"a {i}", "_instance_id": f"{task}:train:{i}"}
            for task, n in tasks.items() for i in range(n)]


def test_sciriff_tasks_are_capped_in_file_order_without_the_evaluation_tasks():
    spec = PAPER["data"]["skills"]["science"]
    rows = sciriff_rows({"genia_ner": 5, "scierc_ner": 3, "scierc_re": 2, "chemsum": 1})
    chats = normalize(rows, {**spec, "per_source_cap": 2}, origin="sciriff")
    assert [c["source"] for c in chats] == ["genia_ner", "genia_ner", "scierc_re", "scierc_re",
                                            "chemsum"]
    # The first rows of each task, as SciRIFF's create_mixture.py takes them.
    assert [c["messages"][0]["content"] for c in chats[:2]] == ["q genia_ner 0", "q genia_ner 1"]
    assert set(spec["exclude_sources"]) == set(SCIRIFF_EVAL)


def test_a_cap_order_other_than_seeded_or_file_is_an_error():
    with pytest.raises(ValueError, match=r"sciriff: per_source_order 'random'"):
        normalize(sciriff_rows({"a": 3}), {"prompt_field": "input", "response_field": "output",
                                           "source_field": "_instance_id",
                                           "per_source_cap": 1, "per_source_order": "random"},
                  origin="sciriff")


# ---- expected counts -----------------------------------------------------------------------

def test_a_count_outside_the_tolerance_stops_the_fetch_naming_both_counts():
    check_expected(1010, {"rows": 1000, "tolerance": 0.01}, "hub@abc (data safety)")
    check_expected(990, {"rows": 1000, "tolerance": 0.01}, "x")
    with pytest.raises(ValueError, match=r"hub@abc \(data safety\): 1011 rows after the filters, "
                                         r"but the config expects 1000 \(± 1.0%"):
        check_expected(1011, {"rows": 1000, "tolerance": 0.01}, "hub@abc (data safety)")
    with pytest.raises(ValueError, match=r"999 rows .* expects 1000"):
        check_expected(999, {"rows": 1000}, "x")


def test_every_paper_dataset_states_its_expected_rows():
    entries = {"general": PAPER["data"]["general"], **PAPER["data"]["skills"]}
    for name, entry in entries.items():
        assert entry["expect"]["rows"] > 0 and 0 <= entry["expect"]["tolerance"] < 0.1, name
        assert entry["paper_examples"] > 0, name


# ---- truncation ----------------------------------------------------------------------------

def test_a_row_whose_answer_is_cut_away_is_dropped():
    long_prompt = " ".join(["word"] * 40)
    rows = [{"messages": [{"role": "user", "content": "short"},
                          {"role": "assistant", "content": "yes"}]},
            {"messages": [{"role": "user", "content": long_prompt},
                          {"role": "assistant", "content": "yes"}]},
            # Cut inside its answer: kept, with the answer's first tokens.
            {"messages": [{"role": "user", "content": "short"},
                          {"role": "assistant", "content": long_prompt}]}]
    tokenizer = build_tokenizer(["short yes word"])
    examples = encode_chat(rows, tokenizer, 16, "rows")
    assert len(examples) == 2
    assert all(any(label != IGNORE for label in e.labels) for e in examples)
    assert all(len(e.input_ids) <= 16 for e in examples)
    # With room for every answer nothing is dropped.
    assert len(encode_chat(rows, tokenizer, 128, "rows")) == 3


def test_paper_training_runs_at_the_papers_sequence_length():
    assert PAPER["training"]["finetune"]["max_len"] == 4096


# ---- pins ----------------------------------------------------------------------------------

def test_a_config_commit_is_downloaded_and_checked(tmp_path):
    commit = "a" * 40
    assert resolve("dataset", "o/n", commit, tmp_path, lambda rev: commit) == (commit, "config")
    with pytest.raises(ValueError, match=r"dataset o/n: the config pins a+, the hub answered b+"):
        resolve("dataset", "o/n", commit, tmp_path, lambda rev: "b" * 40)
    assert not any(tmp_path.iterdir())


def test_without_a_config_commit_the_first_fetch_locks_it_and_later_ones_enforce_it(tmp_path):
    first, later = "c" * 40, "d" * 40
    asked = []

    def hub(revision):
        asked.append(revision)
        return first if revision in (None, first) else later

    assert resolve("model", "o/n", None, tmp_path, hub) == (first, "locked now")
    assert lock_path(tmp_path, "model", "o/n").read_text() == first + "\n"
    assert resolve("model", "o/n", None, tmp_path, hub) == (first, "lock")
    assert asked == [None, first]  # the second fetch asks for the locked commit, not main
    with pytest.raises(ValueError, match=r"pins c+, the hub answered d+"):
        resolve("model", "o/n", None, tmp_path, lambda rev: later)


def test_lock_paths_refuse_ids_that_leave_the_lock_folder(tmp_path):
    for bad in ("../x", "a/../../b", "plain"):
        with pytest.raises(ValueError, match="not a hub id"):
            lock_path(tmp_path, "dataset", bad)


def hub_entries(config: dict) -> dict[str, tuple[str, str, str | None]]:
    """The base model and training sets the config downloads: name -> (kind, repo, revision)."""
    found = {"model": ("model", config["model"]["base"], config["model"].get("revision"))}
    for name, entry in {"general": config["data"]["general"],
                        **config["data"]["skills"]}.items():
        if entry.get("source") == "hub" and not entry.get("data_files"):
            found[f"data.{name}"] = ("dataset", entry["path"], entry.get("revision"))
    return found


def test_the_base_model_and_every_training_set_are_pinned_by_a_commit_or_a_lock_file():
    unpinned = []
    for name, (kind, repo, revision) in hub_entries(PAPER).items():
        locked = lock_path(REPO / "config" / "hub-lock", kind, repo).is_file()
        if not (revision and re.fullmatch(r"[0-9a-f]{40}", revision)) and not locked:
            unpinned.append(f"{name} ({repo})")
    assert not unpinned, f"no commit and no lock file: {unpinned}"


# ---- ω -------------------------------------------------------------------------------------

def write_subset(path: Path, n: int, n_source: int) -> Path:
    path.write_text("".join(json.dumps({"messages": []}) + "\n" for _ in range(n)))
    record = {"path": str(path), "hash": "x", "inputs": {},
              "notes": {"n_examples": n, "n_source": n_source}}
    Path(f"{path}.prov.json").write_text(json.dumps(record))
    return path


def test_omega_from_the_data_or_from_the_papers_sizes(tmp_path):
    general = write_subset(tmp_path / "g.jsonl", 40, 40)
    science = write_subset(tmp_path / "s.jsonl", 5, 10)  # half the science set
    assert skill_omegas([science], general, None) == [pytest.approx(5 / 40)]
    paper = {"general": 275_000, "skills": [61_000]}
    assert skill_omegas([science], general, paper) == [pytest.approx(30_500 / 275_000)]


def test_paper_omega_needs_every_papers_size():
    data = {"general": {"paper_examples": 100}, "skills": {"science": {}, "coding": {}}}
    assert omega_params({}, data, ["science"]) is None
    with pytest.raises(ValueError, match=r"data.skills.science.paper_examples, "
                                         r"data.skills.coding.paper_examples"):
        omega_params({"omega_sizes": "paper"}, data, ["science", "coding"])
    with pytest.raises(ValueError, match=r"merge.omega_sizes: 'both'"):
        omega_params({"omega_sizes": "both"}, data, ["science"])


def test_the_plan_sets_our_omega_beside_the_papers_and_flags_a_gap():
    data = {"general": {"size": "all", "expect": {"rows": 1000}, "paper_examples": 1000},
            "skills": {"safety": {"sizes": ["all"], "expect": {"rows": 100},
                                  "paper_examples": 240},
                       "science": {"sizes": ["pertask20"], "expect": {"rows": 300},
                                   "paper_examples": 220}}}
    safety, science = plan(data, ["safety", "science"], {})
    assert "ours ≈ 0.100" in safety and "paper 0.240" in safety and "differs by 0.140" in safety
    assert "counted from the data at run time" in science and "differs" not in science
    (paper,) = plan(data, ["safety"], {"omega_sizes": "paper"})
    assert "ours 0.240 (merge.omega_sizes: paper)" in paper and "differs" not in paper
    assert expected_rows({"expect": {"rows": 1000}}, "20pct") == 200
    assert expected_rows({"expect": {"rows": 1000}}, "n50") == 50
    capped = {"expect": {"rows": 1000}, "per_source_cap": 2500}
    assert expected_rows(capped, "pertask2500") == 1000
    assert expected_rows(capped, "pertask100") is None


def test_table5_beside_the_paper_carries_both_omegas_and_flags_a_gap():
    reference = read_reference(REPO / "results" / "paper_reference.csv")
    ours = pd.DataFrame([
        {"model": "θ_G", "source": "general", "General": 45.0, "Science": 20.0, "Safety": 50.3,
         "Coding": 30.0, "ExRef": 100.0, "omega_science": None, "omega_safety": None},
        {"model": "PTM science + safety", "source": "merge-ta-heuristic-science-all+safety-all",
         "General": 50.0, "Science": 30.0, "Safety": 40.0, "Coding": 40.0, "ExRef": 90.0,
         "omega_science": 0.23, "omega_safety": 0.05},
        {"model": "PTM science + coding", "source": "merge-ta-heuristic-science-all+coding-all",
         "General": 50.0, "Science": 30.0, "Safety": 40.0, "Coding": 40.0, "ExRef": 90.0,
         "omega_science": 0.23, "omega_coding": 0.585},
    ])
    frame = compare(ours, reference).set_index(["source", "column"])
    pair = frame.loc[("merge-ta-heuristic-science-all+safety-all", "Safety")]
    assert (pair["omega"], pair["omega_paper"]) == ("0.23+0.05", "0.22+0.24")
    assert pair["omega_difference"] == pytest.approx(0.19)
    assert "0.190 > 0.02" in pair["omega_flag"]
    close = frame.loc[("merge-ta-heuristic-science-all+coding-all", "General")]
    assert close["omega_flag"] == "" and close["omega_difference"] == pytest.approx(0.015)
    assert frame.loc[("general", "General"), "omega_flag"] == ""
    with pytest.raises(ValueError, match=r"no omega_<skill> value"):
        omega_columns({"model": "m"}, "science", {"science": 0.22})


# ---- the stand-in --------------------------------------------------------------------------

STANDIN = yaml.safe_load((REPO / "config" / "standin.yaml").read_text())


def test_the_standin_filters_give_the_rows_its_config_expects():
    from mtl import standin

    tables = standin.datasets(STANDIN["model"]["standin"]["rows"], STANDIN["seed"])
    names = {"general": "tulu-v2-sft-mixture", "science": "SciRIFF",
             "safety": "wildjailbreak", "coding": "CodeFeedback-Filtered-Instruction"}
    entries = {"general": STANDIN["data"]["general"], **STANDIN["data"]["skills"]}
    for name, entry in entries.items():
        rows = normalize(tables[names[name]], entry, names[name])
        check_expected(len(rows), entry["expect"], name)
    # The stand-in's science filter is the paper's.
    for key in ("exclude_sources", "source_field", "source_delimiter", "per_source_order"):
        assert STANDIN["data"]["skills"]["science"][key] == \
            PAPER["data"]["skills"]["science"][key], key


@pytest.mark.slow
def test_a_standin_fetch_outside_its_expected_count_fails_naming_both(tmp_path):
    from workflow import copy_repo, snakemake

    workdir = copy_repo(tmp_path / "repo")
    override = workdir / "config" / "expect-61.yaml"
    override.write_text(yaml.safe_dump({"data": {"skills": {"safety": {
        "expect": {"rows": 61, "tolerance": 0.0}}}}}))
    done = snakemake(workdir, "--cores", "1", "--configfile", "config/standin.yaml",
                     str(override.relative_to(workdir)), "--", "results/sources/safety.jsonl",
                     check=False)
    assert done.returncode != 0
    log = (workdir / "results" / "logs" / "fetch_dataset" / "safety.log").read_text()
    assert "60 rows after the filters, but the config expects 61" in log
    assert not (workdir / "results" / "sources" / "safety.jsonl").exists()
