"""The workflow on config/test.yaml: table 5 from the eval JSONs, incremental reruns that plan
exactly the affected jobs, determinism, audits that name a flipped byte, and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow import TEST_CONFIG, clone_run, copy_repo, planned_jobs, prov_hashes, snakemake

pytestmark = pytest.mark.slow

SKILLS = ("science", "safety", "coding")
TABLE5_ROWS = 1 + 3 + 3 + 1


def test_table5_has_the_papers_shape_and_comes_from_the_eval_jsons(toy_run):
    table = pd.read_csv(toy_run / "results/table5.csv")
    assert len(table) == TABLE5_ROWS
    for column in ("General", "Science", "Safety", "Coding", "ExRef"):
        assert column in table and f"{column}_se" in table
    assert table.loc[0, "model"] == "θ_G (baseline)"
    assert table.loc[0, [f"omega_{s}" for s in SKILLS]].isna().all()
    # Every cell is recomputed from the evaluation folder the row names.
    for _, row in table.iterrows():
        summary = json.loads((toy_run / "results/evals" / row["source"] / "summary.json")
                             .read_text())
        (point,) = summary["points"]
        for suite, column in (("general", "General"), ("safety", "Safety"), ("exref", "ExRef")):
            assert row[column] == pytest.approx(100 * point["scores"][suite]["score"], abs=0.01)
            per_suite = json.loads((toy_run / "results/evals" / row["source"] / f"{suite}.json")
                                   .read_text())
            assert per_suite["score"] == point["scores"][suite]["score"]
            assert "results" in per_suite["lm_eval"][f"toy_{suite}"]


def test_heuristic_omega_is_computed_from_the_actual_subset_sizes(toy_run):
    table = pd.read_csv(toy_run / "results/table5.csv").set_index("source")
    def count(path):
        return len((toy_run / path).read_text().splitlines())

    n_general = count("results/data/general/all.jsonl")
    for skill in SKILLS:
        n_skill = count(f"results/data/{skill}/all.jsonl")
        omega = table.loc[f"merge-ta-heuristic-{skill}-all", f"omega_{skill}"]
        assert omega == pytest.approx(n_skill / n_general, abs=1e-4)


TABLE3_PROCEDURES = ["θ_G", "CFT", "RT", "PTM heuristic ω", "PTM best ω"]


def test_table3_compares_cft_rt_and_ptm_from_the_eval_jsons(toy_run, tmp_path):
    run = clone_run(toy_run, tmp_path / "run")
    snakemake(run, "results/table3.csv", "--cores", "2", *TEST_CONFIG)
    table = pd.read_csv(run / "results/table3.csv")
    assert table.groupby("skill", sort=False)["procedure"].apply(list).to_dict() == {
        skill: TABLE3_PROCEDURES for skill in SKILLS
    }
    base = table.iloc[0]
    for _, row in table.iterrows():
        points = json.loads((run / "results/evals" / row["source"] / "summary.json").read_text())[
            "points"
        ]
        if row["procedure"] == "PTM best ω":
            # The grid point with the best skill score, the smallest ω among ties.
            best = max(p["scores"][row["skill"]]["score"] for p in points)
            omega = min(p["omega"][0] for p in points if p["scores"][row["skill"]]["score"] == best)
            assert (row["Skill"], row["omega"]) == (pytest.approx(100 * best, abs=0.01), omega)
            continue
        (point,) = points
        for column, suite in (("General", "general"), ("Skill", row["skill"]), ("ExRef", "exref")):
            assert row[column] == pytest.approx(100 * point["scores"][suite]["score"], abs=0.01)
        if base["General"]:  # a change from zero is not a percentage: left empty
            change = 100 * (row["General"] - base["General"]) / base["General"]
            assert row["General_change_pct"] == pytest.approx(change, abs=0.1)
        else:
            assert pd.isna(row["General_change_pct"])
    # Cost in optimizer steps: CFT and PTM train on D alone (same steps), RT on G ∪ D.
    steps = table.pivot(index="skill", columns="procedure", values="train_steps")
    assert (steps["CFT"] == steps["PTM heuristic ω"]).all()
    assert (steps["RT"] > steps["CFT"]).all()
    assert table.loc[table["procedure"] == "θ_G", "train_steps"].isna().all()
    assert (run / "results/figures/table3.png").read_bytes()[:4] == b"\x89PNG"


def test_every_artifact_has_a_provenance_record(toy_run):
    results = toy_run / "results"
    hashes = prov_hashes(toy_run)
    assert "results/table5.csv" in hashes and "results/models/general" in hashes
    # Every record has its artifact ...
    for artifact in hashes:
        assert (toy_run / artifact).exists(), artifact
    # ... and every file the run left (outside logs, benchmarks and resume state) is an artifact
    # with a record, or a file its folder artifact's record lists.
    manifests = {
        path: json.loads((toy_run / f"{path}.prov.json").read_text()).get("manifest")
        for path in hashes
    }
    unrecorded = []
    for file in sorted(p for p in results.rglob("*") if p.is_file()):
        rel = file.relative_to(toy_run).as_posix()
        if rel.endswith(".prov.json") or rel.split("/")[1] in ("logs", "benchmarks", ".resume"):
            continue
        if rel in hashes:
            continue
        folder = next((a for a in manifests if rel.startswith(a + "/")), None)
        inside = rel[len(folder) + 1:] if folder else None
        if folder is None or (inside not in manifests[folder]
                              and inside != ".snakemake_timestamp"):
            unrecorded.append(rel)
    assert not unrecorded, f"files without a provenance record: {unrecorded}"
    record = json.loads((toy_run / "results/models/general.prov.json").read_text())
    assert record["rule"] == "train_general" and record["seed"] is not None
    assert {"init", "data"} <= set(record["inputs"])


def test_a_rerun_with_nothing_changed_plans_nothing(toy_run):
    assert planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG) == set()


def _jobs_touching_safety() -> set[tuple[str, str]]:
    merges = ["safety-all", "science-all+safety-all", "safety-all+coding-all",
              "science-all+safety-all+coding-all"]
    return {
        ("subset", "dataset=safety, size=all"),
        ("train_regime", "regime=ptm, skill=safety, size=all"),
        ("task_vector", "skill=safety, size=all"),
        *{("evaluate_merge", f"method=ta, weighting=heuristic, skillset={m}") for m in merges},
        ("table5", ""),
    }


def test_changing_the_safety_config_entry_plans_exactly_its_dependents(toy_run, tmp_path):
    override = tmp_path / "safety-seed.yaml"
    override.write_text(yaml.safe_dump({"data": {"skills": {"safety": {"seed": 7}}}}))
    planned = planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, str(override))
    assert planned == _jobs_touching_safety()


def test_changing_the_safety_data_file_plans_exactly_its_dependents(toy_run, tmp_path):
    run = clone_run(toy_run, tmp_path / "run")
    source = run / "results/world/safety.jsonl"
    rows = source.read_text().splitlines()
    source.write_text("\n".join(rows[:-1]) + "\n")  # drop one example
    planned = planned_jobs(run, "results/table5.csv", *TEST_CONFIG)
    assert planned == _jobs_touching_safety()


def _audit(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtl.audit", *args], cwd=workdir,
                          capture_output=True, text=True, timeout=300)


def test_audit_of_table5_verifies_the_whole_lineage(toy_run):
    done = _audit(toy_run, "results/table5.csv", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "results/world/corpus.jsonl" in done.stdout


@pytest.mark.parametrize("target", ["results/taskvectors/safety-all.safetensors",
                                    "results/data/science/all.jsonl"])
def test_audit_names_a_flipped_byte_and_every_table_downstream(toy_run, tmp_path, target):
    run = clone_run(toy_run, tmp_path / "run")
    path = run / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    done = _audit(run, "results/table5.csv", "--json")
    assert done.returncode != 0
    report = json.loads(done.stdout)
    text = json.dumps(report)
    assert target in text and "modified" in text
    assert "stale" in text and "results/table5.csv" in text


def test_bad_config_names_the_key(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"training": {"finetune": {"lr": "fast", "batch_size": 2,
                                                             "epochs": 1}}}))
    done = snakemake(repo, "-n", "results/table5.csv", "--configfile", str(bad), check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "['finetune']['lr']" in output and "'fast' is not of type 'number'" in output
    bad.write_text(yaml.safe_dump({"trainng": {}}))
    done = snakemake(repo, "-n", "results/table5.csv", "--configfile", str(bad), check=False)
    assert done.returncode != 0 and "trainng" in done.stdout + done.stderr


def test_a_dataset_row_without_messages_fails_naming_file_and_line(toy_run, tmp_path):
    run = clone_run(toy_run, tmp_path / "run")
    source = run / "results/world/coding.jsonl"
    rows = source.read_text().splitlines()
    rows[4] = json.dumps({"id": "broken"})
    source.write_text("\n".join(rows) + "\n")
    done = snakemake(run, "results/data/coding/all.jsonl", "--cores", "1", *TEST_CONFIG,
                     check=False)
    assert done.returncode != 0
    log = (run / "results/logs/subset/coding-all.log").read_text()
    assert "results/world/coding.jsonl:5: row is missing field(s) messages" in log
    # The failed job leaves nothing that looks finished; the other datasets are untouched.
    assert not (run / "results/data/coding/all.jsonl").exists()
    assert not (run / "results/data/coding/all.jsonl.prov.json").exists()
    assert (run / "results/data/science/all.jsonl").exists()
