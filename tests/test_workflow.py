"""The workflow on config/test.yaml: table 5 from the eval JSONs, incremental reruns that plan
exactly the affected jobs, determinism, audits that name a flipped byte, and bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow import (
    RESULT_SOURCES,
    TEST_CONFIG,
    TEST_SEEDS,
    clone_run,
    copy_repo,
    env,
    planned_jobs,
    prov_hashes,
    seeded,
    snakemake,
)

pytestmark = pytest.mark.slow

SKILLS = ("science", "safety", "coding")
TABLE5_ROWS = 1 + 3 + 3 + 1


# Each suite's headline metric, as the paper reports it (refusal rate for safety, compliance
# on benign look-alikes for ExRef); the per-sample values lm-eval logged are the raw source.
HEADLINE = {"General": ("general", "exact_match"), "Science": ("science", "exact_match"),
            "Safety": ("safety", "refusal"), "Coding": ("coding", "pass"),
            "ExRef": ("exref", "compliance")}


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _sample_mean_and_stderr(eval_dir: Path, suite: str, metric: str) -> tuple[float, float, int]:
    """Mean and standard error of the mean of the per-sample metric lm-eval logged."""
    raw = json.loads((eval_dir / f"{suite}.json").read_text())["lm_eval"][f"toy_{suite}"]
    values = [float(sample[metric]) for sample in raw["samples"][f"toy_{suite}"]]
    n = len(values)
    mean = sum(values) / n
    stderr = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)
    # lm-eval's own aggregate of those samples: the raw file is consistent with itself.
    assert raw["results"][f"toy_{suite}"][f"{metric},none"] == pytest.approx(mean)
    return mean, stderr, n


def _merged_skills(source: str) -> dict[str, str]:
    """{skill: size} of a heuristic merge, from its evaluation folder's name alone."""
    prefix = "merge-ta-heuristic-"
    assert source.startswith(prefix), source
    return dict(part.rsplit("-", 1) for part in source.removeprefix(prefix).split("+"))


def test_table5_has_the_papers_shape(toy_run):
    table = pd.read_csv(toy_run / "results/table5.csv")
    assert len(table) == TABLE5_ROWS
    for column in HEADLINE:
        assert column in table and f"{column}_sd" in table
    assert table.loc[0, "model"] == "θ_G (baseline)"
    # θ_G is trained once; every merge is averaged over every seed of the config.
    assert table["seeds"].tolist() == [1] + [len(TEST_SEEDS)] * (TABLE5_ROWS - 1)
    assert table.loc[0, [f"omega_{s}" for s in SKILLS]].isna().all()
    merged = [tuple(_merged_skills(source)) for source in table["source"][1:]]
    assert sorted(merged, key=len) == merged and len(set(merged)) == len(merged)
    assert {skill for skills in merged for skill in skills} == set(SKILLS)


def test_table5_every_mean_and_sd_is_recomputed_from_lm_evals_samples(toy_run):
    """Each cell is the mean over seeds of the seed's score recomputed from lm-eval's samples,
    and its `_sd` the sample sd over seeds (none for θ_G, trained once)."""
    table = pd.read_csv(toy_run / "results/table5.csv")
    for _, row in table.iterrows():
        seeds = [None] if row["source"] == "general" else TEST_SEEDS
        for column, (suite, metric) in HEADLINE.items():
            scores = []
            for seed in seeds:
                eval_dir = toy_run / seeded("evals", row["source"], seed)
                mean, _, n = _sample_mean_and_stderr(eval_dir, suite, metric)
                # Every prompt of the suite's evaluation file was scored, once.
                eval_file = toy_run / f"results/world/eval/{suite}.jsonl"
                assert n == _lines(eval_file), (row["source"], seed, suite)
                scores.append(100 * mean)
            where = (row["source"], column)
            assert row[column] == pytest.approx(sum(scores) / len(scores), abs=0.0051), where
            if len(scores) == 1:
                assert pd.isna(row[f"{column}_sd"]), where
            else:
                assert row[f"{column}_sd"] == pytest.approx(
                    pd.Series(scores).std(ddof=1), abs=0.0051), where


def test_table5_omegas_are_the_subset_size_ratios_of_the_merged_skills(toy_run):
    table = pd.read_csv(toy_run / "results/table5.csv")
    n_general = _lines(toy_run / "results/data/general/all.jsonl")
    for _, row in table.iloc[1:].iterrows():
        merged = _merged_skills(row["source"])
        assert row["model"] == "PTM " + " + ".join(merged)
        for skill in SKILLS:
            omega = row[f"omega_{skill}"]
            if skill not in merged:
                assert pd.isna(omega), (row["source"], skill)
                continue
            n_skill = _lines(toy_run / f"results/data/{skill}/{merged[skill]}.jsonl")
            assert omega == pytest.approx(n_skill / n_general, abs=1e-4), (row["source"], skill)


TABLE3_PROCEDURES = ["θ_G", "CFT", "RT", "PTM heuristic ω", "PTM held-out ω", "PTM best ω"]


def test_table3_compares_cft_rt_and_ptm_from_the_eval_jsons(full_run):
    run = full_run
    table = pd.read_csv(run / "results/table3.csv")
    assert table.groupby("skill", sort=False)["procedure"].apply(list).to_dict() == {
        skill: TABLE3_PROCEDURES for skill in SKILLS
    }
    base = table.iloc[0]

    def seed_points(source: str, seed: int | None) -> list[dict]:
        summary = run / seeded("evals", source, seed) / "summary.json"
        return json.loads(summary.read_text())["points"]

    for _, row in table.iterrows():
        seeds = [None] if row["source"] == "general" else TEST_SEEDS
        per_seed = [seed_points(row["source"], seed) for seed in seeds]
        if row["procedure"] in ("PTM best ω", "PTM held-out ω"):
            # The grid point with the best skill score on the mean over seeds, smallest ω of ties:
            # on the test set itself, or on the development set (its own evaluation folder).
            chosen_on = per_seed if row["procedure"] == "PTM best ω" else [
                json.loads((run / "results/evals/dev" / f"seed-{seed}" / row["source"]
                            / "summary.json").read_text())["points"] for seed in seeds]
            means = [sum(points[i]["scores"][row["skill"]]["score"] for points in chosen_on)
                     / len(chosen_on) for i in range(len(chosen_on[0]))]
            best = max(means)
            at = min((i for i, m in enumerate(means) if m == best),
                     key=lambda i: chosen_on[0][i]["omega"][0])
            test = sum(points[at]["scores"][row["skill"]]["score"] for points in per_seed)
            assert (row["Skill"], row["omega"]) == (
                pytest.approx(100 * test / len(per_seed), abs=0.01), per_seed[0][at]["omega"][0])
            continue
        assert all(len(points) == 1 for points in per_seed), row["source"]
        for column, suite in (("General", "general"), ("Skill", row["skill"]), ("ExRef", "exref")):
            mean = sum(points[0]["scores"][suite]["score"] for points in per_seed) / len(seeds)
            assert row[column] == pytest.approx(100 * mean, abs=0.01), (row["source"], column)
        if not base["General"]:  # a change from zero is not a percentage: left empty
            assert pd.isna(row["General_change_pct"])
    # Cost in optimizer steps: CFT and PTM train on D alone (same steps), RT on G ∪ D.
    steps = table.pivot(index="skill", columns="procedure", values="steps")
    assert (steps["CFT"] == steps["PTM heuristic ω"]).all()
    assert (steps["RT"] > steps["CFT"]).all()
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
        if rel in RESULT_SOURCES:  # shipped with the repository, not built by the run
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
    done = snakemake(toy_run, "-n", "results/table5.csv", *TEST_CONFIG)
    assert "Nothing to be done" in done.stdout + done.stderr
    # The parser does see jobs when a plan has some: the empty set above is not its blindness.
    forced = planned_jobs(toy_run, "results/table5.csv", *TEST_CONFIG, "--forcerun", "table5",
                          "subset")
    assert forced >= {("table5", ""), ("subset", "dataset=safety, size=all")}


def _jobs_touching_safety() -> set[tuple[str, str]]:
    """Safety's subset, and at every seed its θ_D, τ and the merges that take it."""
    merges = ["safety-all", "science-all+safety-all", "safety-all+coding-all",
              "science-all+safety-all+coding-all"]
    return {
        ("subset", "dataset=safety, size=all"),
        *{job for seed in TEST_SEEDS for job in (
            ("train_regime", f"seed={seed}, regime=ptm, skillset=safety-all"),
            ("task_vector", f"seed={seed}, skill=safety, size=all"),
            *{("evaluate_merge", f"seed={seed}, method=ta, weighting=heuristic, skillset={m}")
              for m in merges},
        )},
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
    # The copy's own library: an installed `mtl` (pip install -e) may be another checkout's.
    variables = {**env(), "PYTHONPATH": str(workdir / "scripts")}
    return subprocess.run([sys.executable, "-m", "mtl.audit", *args], cwd=workdir, env=variables,
                          capture_output=True, text=True, timeout=300)


def _consumers(workdir: Path, changed: str) -> set[str]:
    """Every artifact built, directly or through others, from `changed`: read from the
    provenance records themselves, not from the audit."""
    built_from: dict[str, set[str]] = {}
    for prov in (workdir / "results").rglob("*.prov.json"):
        record = json.loads(prov.read_text())
        artifact = prov.relative_to(workdir).as_posix()[: -len(".prov.json")]
        built_from[artifact] = {entry["path"] for entries in record["inputs"].values()
                                for entry in entries}
    found = {changed}
    while grown := {a for a, inputs in built_from.items() if inputs & found} - found:
        found |= grown
    return found - {changed}


def test_audit_of_table5_verifies_the_whole_lineage(toy_run):
    done = _audit(toy_run, "results/table5.csv", "--json")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert "results/world/corpus.jsonl" in report["nodes"]
    assert not [path for path, node in report["nodes"].items() if node["problem"]]


@pytest.mark.parametrize("target", [seeded("taskvectors", "safety-all.safetensors"),
                                    "results/data/science/all.jsonl"])
def test_audit_names_a_flipped_byte_and_every_table_downstream(toy_run, tmp_path, target):
    run = clone_run(toy_run, tmp_path / "run")
    path = run / target
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    done = _audit(run, "results/table5.csv", "--json", "--cells")
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    nodes = report["nodes"]
    consumers = _consumers(run, target)
    assert "results/table5.csv" in consumers and consumers <= nodes.keys()

    assert nodes[target]["status"] == "modified"
    assert "differs from its record" in " ".join(nodes[target]["reasons"])
    for consumer in consumers:
        assert nodes[consumer]["status"] == "stale", consumer
        assert target in nodes[consumer]["stale_because"], consumer
    # Everything else in table 5's lineage (upstream of the flip, the other skills' branches)
    # is no problem; what exists is verified.
    others = {key: node for key, node in nodes.items() if key not in consumers | {target}}
    assert any("safety" not in key and "science" not in key for key in others)
    for key, node in others.items():
        assert not node["problem"], (key, node["status"], node["reasons"], node["stale_inputs"])
        if node["exists"]:
            assert node["status"] == "verified", (key, node["status"])
    assert {key for key, node in nodes.items() if node["problem"]} == consumers | {target}
    # Table 5's cells: stale exactly where the row's evaluation was built from the flipped file.
    cells = report["cells"]["results/table5.csv"]
    assert {key.split("|")[1] for key in cells} >= {"General", "Science", "Safety", "Coding",
                                                     "ExRef"}
    for key, cell in cells.items():
        folders = {Path(artifact).parent.as_posix() for artifact in cell["artifacts"]}
        expected = "stale" if folders & consumers else "verified"
        assert cell["status"] == expected, (key, cell)
    assert any(cell["status"] == "verified" for cell in cells.values())


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
