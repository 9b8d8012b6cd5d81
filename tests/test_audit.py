"""The audit command on a small fake lineage built with real Step records.

raw/math.jsonl ─subset─▶ data ─┐
raw/corpus.txt ─pretrain─▶ base ─┼─train─▶ model ─extract─▶ taskvector ─evaluate─▶ evals/merge
                            └───────────────────────────────evaluate─▶ evals/base
evals/base + evals/merge ─table5─▶ table5.csv
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import mtl
from mtl import audit, hashing, lineage, provenance
from mtl.provenance import Step, sidecar

RAW = "raw/math.jsonl"
CORPUS = "raw/corpus.txt"
DATA = "results/data/math/1k.jsonl"
BASE = "results/models/base"
MODEL = "results/models/ptm-math-1k"
TV = "results/taskvectors/math-1k.safetensors"
EVAL_BASE = "results/evals/base"
EVAL_MERGE = "results/evals/merge-math"
MERGED = "results/models/merge-math"  # evaluated without being written
TABLE = "results/table5.csv"
SCRIPT = "scripts/step.py"
CONFIG = {"eval": {"fewshot": 5, "suites": ["mmlu", "gsm8k"]}, "merge.omega": 0.5}


def write(path: str, content: str | bytes) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content)


def run_step(
    rule: str,
    inputs: dict[str, str | list[str]],
    artifact: str,
    files: dict[str, str | bytes],
    wildcards: dict[str, str] | None = None,
    notes: Callable[[Step], None] | None = None,
) -> None:
    """One job: writes `files` into `artifact` (a folder, or the file itself when key is "")."""
    outputs = {"out": artifact, "prov": sidecar(artifact).as_posix()}
    wildcards = wildcards or {}
    with Step(rule, inputs, outputs, {}, wildcards, seed=1, config=CONFIG, code=[SCRIPT]) as step:
        for name, content in files.items():
            write(f"{artifact}/{name}" if name else artifact, content)
        if notes:
            notes(step)


def build_data(content: str = '{"q": "1+1", "a": "2"}\n') -> None:
    run_step("subset", {"source": RAW}, DATA, {"": content}, {"skill": "math", "size": "1k"})


def table_cells(step: Step) -> None:
    for model, folder in (("base", EVAL_BASE), ("merge-math", EVAL_MERGE)):
        for suite in ("mmlu", "gsm8k"):
            step.note_cell(model, suite, [f"{folder}/{suite}.json"], config=["eval.fewshot"])
    step.note_cell("merge-math", "omega", [EVAL_MERGE], config=["merge.omega"])


def build_chain() -> None:
    write(RAW, '{"q": "1+1", "a": "2"}\n{"q": "2+2", "a": "4"}\n')
    write(CORPUS, "to add 3 4 gives 7.\n")
    write(SCRIPT, "# the step program\n")
    build_data()
    run_step("pretrain", {"corpus": CORPUS}, BASE, {"config.json": "{}", "w.bin": b"\x00" * 64})
    run_step(
        "train", {"data": DATA, "base": BASE}, MODEL, {"config.json": "{}", "w.bin": b"\x01" * 64}
    )
    run_step("extract", {"model": MODEL, "base": BASE}, TV, {"": b"\x01" * 64})
    recipe = {"method": "linear", "omega": 0.5, "base": BASE, "taskvectors": [TV]}
    run_step(
        "evaluate",
        {"taskvector": TV, "base": BASE},
        EVAL_MERGE,
        {"mmlu.json": '{"acc": 0.4}', "gsm8k.json": '{"acc": 0.2}'},
        {"model_id": "merge-math"},
        lambda s: s.note(derived=[{"id": "merge-math", "recipe": recipe, "path": MERGED}]),
    )
    run_step(
        "evaluate",
        {"model": BASE},
        EVAL_BASE,
        {"mmlu.json": '{"acc": 0.5}', "gsm8k.json": '{"acc": 0.1}'},
        {"model_id": "base"},
    )
    run_step(
        "table5", {"evals": [EVAL_BASE, EVAL_MERGE]}, TABLE, {"": "model,mmlu\n"}, notes=table_cells
    )


@pytest.fixture
def chain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    build_chain()
    return tmp_path


def flip_byte(path: str, offset: int = 0) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


def audit_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = audit.main([*args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def statuses(report: dict) -> dict[str, str]:
    return {path: node["status"] for path, node in report["nodes"].items()}


def test_clean_chain_is_verified(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main([TABLE]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{TABLE}: verified  [rule table5]")
    assert f"  evals: {EVAL_MERGE}/: verified  [rule evaluate model_id=merge-math]" in out
    assert f"source: {RAW}: verified  [raw input]" in out
    # The base model feeds four steps: its subtree is printed once, then referred to.
    assert out.count(f"{BASE}/: verified  [rule pretrain]") == 1
    assert out.count(f"base: {BASE}/: verified (see above)") == 3
    assert f"derived: {MERGED}: missing (reproducible)" in out
    assert '= not kept, reproducible from recipe {"base": "results/models/base"' in out
    assert out.rstrip().endswith(
        "summary: 10 artifacts: 9 verified, 0 modified, 0 stale, 1 missing (1 reproducible),"
        " 0 foreign, 0 no-record: OK"
    )


def test_taskvector_byte_flip_is_named_and_propagates(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(TV, offset=17)
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    assert report["ok"] is False
    status = statuses(report)
    assert status[TV] == "modified"
    assert status[EVAL_MERGE] == "stale"
    assert status[TABLE] == "stale"
    # Upstream of the flip, and the other branch, are untouched.
    for path in (RAW, DATA, BASE, MODEL, EVAL_BASE):
        assert status[path] == "verified", path
    assert report["nodes"][EVAL_MERGE]["stale_inputs"] == [f"input taskvector {TV} is modified"]
    assert report["nodes"][TABLE]["stale_inputs"] == [
        f"input evals {EVAL_MERGE} is stale (because of {TV})"
    ]
    assert report["nodes"][TABLE]["stale_because"] == [TV]
    assert report["summary"] | {"total": 0} == {
        "modified": 1,
        "stale": 2,
        "foreign": 0,
        "no-record": 0,
        "missing": 1,
        "not-built": 0,
        "verified": 6,
        "reproducible": 1,
        "total": 0,
    }

    audit.main([TABLE])
    out = capsys.readouterr().out
    assert f"taskvector: {TV}: MODIFIED  [rule extract]" in out
    assert "differs from its record" in out
    assert out.rstrip().endswith("PROBLEMS FOUND")


def test_dataset_byte_flip_flags_everything_downstream(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(DATA, offset=3)
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    status = statuses(report)
    assert status[DATA] == "modified"
    for path in (MODEL, TV, EVAL_MERGE, TABLE):
        assert status[path] == "stale", path
    for path in (RAW, CORPUS, BASE, EVAL_BASE):
        assert status[path] == "verified", path
    assert report["nodes"][MODEL]["stale_inputs"] == [f"input data {DATA} is modified"]
    assert report["nodes"][TABLE]["stale_because"] == [DATA]


def test_raw_data_change_is_checked_against_the_consumer(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(RAW)
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    assert statuses(report)[RAW] == "modified"
    assert report["nodes"][RAW]["reasons"][0].endswith(f"recorded by {DATA}")
    assert report["nodes"][DATA]["stale_inputs"][0].startswith(
        f"input source {RAW} changed after this was built"
    )
    assert statuses(report)[TABLE] == "stale"


def test_folder_report_names_the_changed_files(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(f"{EVAL_MERGE}/mmlu.json", '{"acc": 0.9}')
    write(f"{EVAL_MERGE}/extra.json", "{}")
    code, report = audit_json(capsys, EVAL_MERGE)
    assert code == 1
    node = report["nodes"][EVAL_MERGE]
    assert node["status"] == "modified"
    assert node["changed_files"] == ["extra.json", "mmlu.json"]
    assert node["reasons"][1:] == ["changed: mmlu.json", "added: extra.json"]


def test_rebuilt_input_makes_consumers_stale(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    build_data('{"q": "2+2", "a": "4"}\n')  # re-run of the subset rule; train not re-run
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    status = statuses(report)
    assert status[DATA] == "verified"
    assert status[MODEL] == "stale"
    assert "was rebuilt after this was built" in report["nodes"][MODEL]["stale_inputs"][0]
    assert status[TABLE] == "stale"


def test_deleted_intermediate_is_missing_but_reproducible(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(MODEL)  # like a temp() model removed after its task vector was extracted
    code, report = audit_json(capsys, TABLE)
    assert code == 0
    node = report["nodes"][MODEL]
    assert (node["status"], node["exists"], node["reproducible"]) == ("missing", False, True)
    assert "rule train rebuilds it" in node["recipe"]
    assert statuses(report)[TV] == "verified"

    # A change upstream of the deleted model still reaches everything built from it.
    flip_byte(DATA)
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    assert statuses(report)[MODEL] == "stale"
    assert statuses(report)[TV] == "stale"


def test_missing_raw_data_is_not_reproducible(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.remove(RAW)
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    node = report["nodes"][RAW]
    assert (node["status"], node["reproducible"]) == ("missing", False)
    assert node["reasons"] == [f"recorded as input source of {DATA}"]
    assert statuses(report)[DATA] == "verified"  # its content is still what was recorded


def test_virtual_model_audited_directly(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main([MERGED]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{MERGED}: missing (reproducible)")
    assert '"omega": 0.5' in out
    assert f"({EVAL_MERGE})" in out
    assert audit.main(["results/models/never-made"]) == 1
    assert "results/models/never-made: MISSING" in capsys.readouterr().out


def test_absent_or_broken_records(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.remove(sidecar(MODEL))
    code, report = audit_json(capsys, TV)
    assert code == 1
    assert statuses(report)[MODEL] == "foreign"
    assert report["nodes"][MODEL]["reasons"] == [
        f"its record {MODEL}.prov.json (read when {TV} was built) is gone"
    ]
    assert statuses(report)[TV] == "verified"  # the model's content still matches what TV used

    write(sidecar(DATA).as_posix(), "{truncated")
    code, report = audit_json(capsys, DATA)
    assert code == 1
    assert statuses(report)[DATA] == "no-record"
    assert f"{DATA}.prov.json" in report["nodes"][DATA]["reasons"][0]

    code, report = audit_json(capsys, RAW)  # a target is expected to have a record
    assert code == 1
    assert report["nodes"][RAW]["reasons"] == [f"no provenance record {RAW}.prov.json"]


def test_code_change_is_reported_but_not_a_failure(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(SCRIPT, "# the step program, edited\n")
    code, report = audit_json(capsys, TABLE)
    assert code == 0
    assert report["nodes"][TABLE]["code_changed"] == [SCRIPT]
    audit.main([TABLE])
    assert f"~ code changed since it was built: {SCRIPT}" in capsys.readouterr().out


def test_cells(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main([TABLE, "--cells"]) == 0
    out = capsys.readouterr().out
    assert (
        f"cells of {TABLE}:\n"
        "  base|gsm8k: verified\n"
        f"      {EVAL_BASE}/gsm8k.json: verified\n"
        "      config eval.fewshot = 5\n"
    ) in out
    assert f"  merge-math|omega: verified\n      {EVAL_MERGE}: verified\n" in out
    assert "      config merge.omega = 0.5\n" in out

    # One suite's result edited by hand: only that cell is affected.
    write(f"{EVAL_MERGE}/mmlu.json", '{"acc": 0.9}')
    code, report = audit_json(capsys, TABLE, "--cells")
    assert code == 1
    cells = report["cells"][TABLE]
    assert {cell: info["status"] for cell, info in cells.items()} == {
        "base|gsm8k": "verified",
        "base|mmlu": "verified",
        "merge-math|gsm8k": "verified",
        "merge-math|mmlu": "modified",
        "merge-math|omega": "modified",
    }
    assert cells["merge-math|mmlu"] == {
        "status": "modified",
        "artifacts": {f"{EVAL_MERGE}/mmlu.json": "modified"},
        "config": {"eval.fewshot": 5},
    }


def test_cells_follow_a_taskvector_flip(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(TV)
    code, report = audit_json(capsys, TABLE, "--cells")
    assert code == 1
    cells = {cell: info["status"] for cell, info in report["cells"][TABLE].items()}
    assert cells == {
        "base|gsm8k": "verified",
        "base|mmlu": "verified",
        "merge-math|gsm8k": "stale",
        "merge-math|mmlu": "stale",
        "merge-math|omega": "stale",
    }


def test_cells_need_a_cells_note(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert audit.main([TV, "--cells"]) == 2
    assert f"{TV}: its record has no 'cells' note" in capsys.readouterr().err


def test_each_path_is_hashed_once(
    chain: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: Counter[str] = Counter()
    real_hash_file = hashing.hash_file

    def counting(path: str | os.PathLike, *algorithm: str) -> str:
        calls[Path(path).resolve().as_posix()] += 1
        return real_hash_file(path, *algorithm)

    monkeypatch.setattr(hashing, "hash_file", counting)  # a folder's manifest
    monkeypatch.setattr(lineage, "hash_file", counting)
    assert audit.main([TABLE, EVAL_MERGE, TV]) == 0
    assert calls, "nothing was hashed"
    assert max(calls.values()) == 1, [path for path, n in calls.items() if n > 1]
    assert (chain / BASE / "w.bin").resolve().as_posix() in calls


def test_targets_are_normalised(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = audit_json(capsys, f"{BASE}/", f"{TV}.prov.json", str(chain / DATA))
    assert code == 0
    assert report["targets"] == [BASE, TV, DATA]


def test_root_option_and_module_entry_point(
    chain: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    src = Path(mtl.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(src)}
    run = subprocess.run(
        [sys.executable, "-m", "mtl.audit", TABLE, "--root", str(chain)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.rstrip().endswith("0 no-record: OK")
    flip_byte(TV)
    run = subprocess.run(
        [sys.executable, "-m", "mtl.audit", TABLE, "--root", str(chain), "--json"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert json.loads(run.stdout)["nodes"][TV]["status"] == "modified"


SNAKEFILE = """
config.setdefault("train", {"lr": 0.1})
rule all:
    input: "results/table.csv"
rule make:
    input: src="raw/a.txt"
    output: model=directory("results/models/{id}"), prov="results/models/{id}.prov.json"
    params: lr=0.1
    script: "scripts/make.py"
rule table:
    input: models=expand("results/models/{id}", id=["x", "y"])
    output: table="results/table.csv", prov="results/table.csv.prov.json"
    script: "scripts/table.py"
"""
MAKE = """
from pathlib import Path
from mtl.io import atomic_dir
from mtl.provenance import Step
with Step.from_snakemake(snakemake, seed=1, config_keys=["train.lr"]):
    with atomic_dir(snakemake.output.model) as tmp:
        (tmp / "w.bin").write_bytes(Path(snakemake.input.src).read_bytes() * 3)
"""
TABLE_SCRIPT = """
from mtl.provenance import Step
with Step.from_snakemake(snakemake, config_keys=["train"]) as step:
    with open(snakemake.output.table, "w") as handle:
        handle.write("model,w\\n")
    for model in snakemake.input.models:
        step.note_cell(model.rsplit("/", 1)[1], "w", [model + "/w.bin"], config=["train.lr"])
"""


def test_records_from_a_real_snakemake_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    for path, text in (
        ("Snakefile", SNAKEFILE),
        ("scripts/make.py", MAKE),
        ("scripts/table.py", TABLE_SCRIPT),
        ("raw/a.txt", "hello\n"),
    ):
        write(path, text)
    src = Path(mtl.__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-c1", "-q"],
        env={**os.environ, "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    # Snakemake marks directory() outputs with .snakemake_timestamp after the job: not content.
    assert Path("results/models/x/.snakemake_timestamp").exists()
    assert audit.main(["results/table.csv", "--cells"]) == 0
    out = capsys.readouterr().out
    assert "models: results/models/x/: verified  [rule make id=x]" in out
    assert (
        "  x|w: verified\n      results/models/x/w.bin: verified\n      config train.lr = 0.1"
        in out
    )
    code = json.loads(sidecar("results/models/x").read_text())["code"]["files"]
    assert "scripts/make.py" in code
    assert "mtl/provenance.py" in code
    flip_byte("results/models/y/w.bin")
    assert audit.main(["results/table.csv"]) == 1
    assert "input models results/models/y is modified" in capsys.readouterr().out


def fresh_clone(keep: tuple[str, ...] = (TABLE,)) -> None:
    """What a clone has: the committed artifacts and records in `keep`, nothing else built."""
    for path in (DATA, BASE, MODEL, TV, EVAL_BASE, EVAL_MERGE, TABLE):
        if path in keep:
            continue
        if Path(path).is_dir():
            shutil.rmtree(path)
        else:
            os.remove(path)
        os.remove(sidecar(path))


def test_a_fresh_clone_is_not_built_yet_rather_than_broken(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_clone()
    code, report = audit_json(capsys, TABLE)
    assert code == 0
    status = statuses(report)
    assert status[TABLE] == "verified"
    assert status[EVAL_BASE] == status[EVAL_MERGE] == "not-built"
    assert report["nodes"][EVAL_BASE]["recipe"] == (
        f"not built on this machine yet: `snakemake --cores 2 {EVAL_BASE}` builds it"
    )
    assert report["summary"]["not-built"] == 2
    audit.main([TABLE])
    out = capsys.readouterr().out
    assert f"{EVAL_BASE}/: not-built" in out or f"{EVAL_BASE}: not-built" in out
    assert out.rstrip().endswith(
        "2 not built on this machine yet (build them with `snakemake --cores 2 "
        f"{TABLE}`, then audit again): OK"
    )
    # A changed table is still a problem on a fresh clone.
    flip_byte(TABLE)
    code, report = audit_json(capsys, TABLE)
    assert code == 1 and statuses(report)[TABLE] == "modified"


def test_raw_data_missing_is_a_problem_even_on_a_fresh_clone(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh_clone(keep=(TABLE, DATA))
    os.remove(RAW)
    code, report = audit_json(capsys, TABLE, DATA)
    assert code == 1
    assert statuses(report)[RAW] == "missing"  # raw data: no rule builds it
    assert statuses(report)[EVAL_BASE] == "not-built"


def _set_machine(path: str, cls: str, kernels: str | None = "DEFAULT") -> None:
    record = json.loads(sidecar(path).read_text())
    record["machine"] = {"class": cls, "numerics": {"kernels": kernels, "threads": 1,
                                                    "environment": {"MKL_CBWR": "COMPATIBLE"}}}
    sidecar(path).write_text(json.dumps(record))


def test_inputs_built_on_another_machine_class_are_shown_not_failed(
    chain: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for path in (DATA, BASE, MODEL, TV, EVAL_BASE, EVAL_MERGE, TABLE):
        _set_machine(path, "x86_64 avx512 (CPU A), no GPU")
    _set_machine(MODEL, "x86_64 avx2 (CPU B), no GPU", kernels="AVX2")
    code, report = audit_json(capsys, TABLE)
    assert code == 0
    assert report["nodes"][TV]["other_machines"] == [
        f"input {MODEL} was built on x86_64 avx2 (CPU B), no GPU; this on x86_64 avx512 "
        "(CPU A), no GPU",
        f"input {MODEL} was built with numerics {{'kernels': 'AVX2', 'threads': 1, "
        "'environment': {'MKL_CBWR': 'COMPATIBLE'}}; this {'kernels': 'DEFAULT', 'threads': 1,"
        " 'environment': {'MKL_CBWR': 'COMPATIBLE'}}",
    ]
    assert report["nodes"][EVAL_BASE]["other_machines"] == []
    assert all(not report["nodes"][p]["other_machines"] for p in (DATA, BASE, EVAL_MERGE, TABLE))


def _git(*args: str) -> None:
    subprocess.run(["git", *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def test_compare_with_committed_records(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _git("init", "-q")
    _git("add", "-A")
    _git("commit", "-qm", "committed results")
    code, report = audit_json(capsys, TABLE, "--compare", "HEAD")
    assert code == 0 and report["compare"]["identical"]
    assert audit.main([TABLE, "--compare", "HEAD"]) == 0
    assert f"{TABLE}: identical to the record committed at HEAD" in capsys.readouterr().out

    # Rebuilt on another machine: the model comes out different, so do its consumers.
    _set_machine(TABLE, "x86_64 avx2 (CPU B), no GPU")
    _git("commit", "-qam", "records of a build on CPU B")
    run_step("train", {"data": DATA, "base": BASE}, MODEL,
             {"config.json": "{}", "w.bin": b"\x02" * 64})
    run_step("extract", {"model": MODEL, "base": BASE}, TV, {"": b"\x02" * 64})
    run_step("evaluate", {"taskvector": TV, "base": BASE}, EVAL_MERGE,
             {"mmlu.json": '{"acc": 0.3}', "gsm8k.json": '{"acc": 0.2}'},
             {"model_id": "merge-math"})
    run_step("table5", {"evals": [EVAL_BASE, EVAL_MERGE]}, TABLE, {"": "model,mmlu\nx,1\n"},
             notes=table_cells)
    assert audit.main([TABLE, "--compare", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert f"{TABLE}: DIFFERS from the record committed at HEAD" in out
    # The deepest committed record whose hash differs: the model, whose inputs are identical.
    assert f"first difference: {MODEL} itself (its inputs are identical)" in out
    assert "committed build: x86_64 avx2 (CPU B), no GPU" in out
    assert "rebuilt here:    x86_64" in out

    # Where no committed record reaches deeper, the differing inputs are listed.
    for path in (MODEL, TV, EVAL_MERGE):
        _git("rm", "-q", "--cached", sidecar(path).as_posix())
    _git("commit", "-qm", "only the table's record committed")
    assert audit.main([TABLE, "--compare", "HEAD"]) == 1
    out = capsys.readouterr().out
    assert f"first difference: 1 input(s) of {TABLE}:" in out
    assert f"    {EVAL_MERGE}: committed" in out
    assert audit.main([TABLE, "--compare", "no-such-rev"]) == 2


def as_sha256_records() -> None:
    """Rewrite every record as one written before BLAKE3 was adopted: sha256 throughout."""
    for record_path in sorted(Path("results").rglob("*" + provenance.SIDECAR_SUFFIX)):
        record = json.loads(record_path.read_text())
        record["hash"] = hashing.hash_path(record["path"], "sha256")
        if record["kind"] == "dir":
            record["manifest"] = hashing.manifest(record["path"], "sha256")
        for entries in record["inputs"].values():
            for entry in entries:
                entry["hash"] = hashing.hash_path(entry["path"], "sha256")
        record["code"]["files"] = {
            name: hashing.hash_file(name, "sha256") for name in record["code"]["files"]
        }
        record_path.write_text(json.dumps(record))


def test_sha256_records_still_verify(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    as_sha256_records()
    assert json.loads(Path(sidecar(BASE)).read_text())["hash"].startswith("sha256:")
    code, report = audit_json(capsys, TABLE)
    assert code == 0, report
    assert set(statuses(report).values()) == {"verified", "missing"}  # MERGED is never written
    # A changed byte is found by the algorithm the record names, in a file and in a folder.
    flip_byte(CORPUS)
    flip_byte(f"{MODEL}/w.bin")
    code, report = audit_json(capsys, TABLE)
    assert code == 1
    assert statuses(report)[CORPUS] == statuses(report)[MODEL] == "modified"
    assert report["nodes"][MODEL]["changed_files"] == ["w.bin"]
    assert "content sha256:" in " ".join(report["nodes"][CORPUS]["reasons"])


def test_rebuilt_with_blake3_is_not_stale(chain: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A producer rebuilt after BLAKE3 (same bytes, new hash string) leaves its sha256-era
    consumers current; different bytes make them stale as before."""
    as_sha256_records()
    _git("init", "-q")
    _git("add", "-A")
    _git("commit", "-qm", "results committed with sha256 records")
    build_data()  # same content, a blake3 record
    assert provenance.load_record(DATA)["hash"].startswith("blake3:")
    code, report = audit_json(capsys, TABLE)
    assert code == 0 and statuses(report)[MODEL] == "verified"
    assert audit.main([DATA, "--compare", "HEAD"]) == 0
    assert f"{DATA}: identical to the record committed at HEAD" in capsys.readouterr().out
    build_data('{"q": "1+1", "a": "3"}\n')
    code, report = audit_json(capsys, TABLE)
    assert code == 1 and statuses(report)[MODEL] == "stale"
    assert audit.main([DATA, "--compare", "HEAD"]) == 1
    assert f"{DATA}: DIFFERS from the record committed at HEAD" in capsys.readouterr().out
