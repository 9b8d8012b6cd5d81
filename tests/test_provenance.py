"""Provenance records: hashing, the Step context manager and its contract checks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import blake3
import pytest
import torch
from snakemake.iocontainers import (
    InputFiles,
    Log,
    OutputFiles,
    Params,
    ResourceList,
    Snakemake,
    Wildcards,
)

from mtl import hashing, machine, provenance
from mtl.hashing import (
    HashingWriter,
    algorithm_of,
    hash_file,
    hash_path,
    manifest,
    manifest_hash,
)
from mtl.io import atomic_dir, atomic_file
from mtl.provenance import ProvenanceError, Step, load_record, sidecar


def b3(data: bytes) -> str:
    return "blake3:" + blake3.blake3(data).hexdigest()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def outputs(*artifacts: str) -> dict[str, list[str]]:
    return {"out": list(artifacts), "prov": [sidecar(a).as_posix() for a in artifacts]}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_sidecar_names() -> None:
    assert sidecar("results/table5.csv") == Path("results/table5.csv.prov.json")
    assert sidecar("results/models/general/") == Path("results/models/general.prov.json")


def test_hash_file_matches_hashlib_across_chunks(tmp_path: Path) -> None:
    data = os.urandom(int(2.5 * (1 << 20)))  # spans three 1 MiB chunks
    (tmp_path / "big.bin").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    assert hash_file(tmp_path / "big.bin") == b3(data)
    assert hash_file(tmp_path / "big.bin") == hash_file(tmp_path / "big.bin")
    assert hash_file(tmp_path / "empty") == b3(b"")
    # Records written before BLAKE3 was adopted are checked with sha256.
    assert hash_file(tmp_path / "big.bin", "sha256") == sha(data)
    assert hash_file(tmp_path / "empty", "sha256") == sha(b"")


def test_algorithm_of_names_the_hash_or_refuses() -> None:
    assert algorithm_of(b3(b"x")) == "blake3"
    assert algorithm_of(sha(b"x")) == "sha256"
    for bad in ("md5:" + "0" * 64, "blake3:" + "0" * 63, "blake3:" + "G" * 64, "0" * 64, None):
        with pytest.raises(ProvenanceError, match="is not a digest"):
            algorithm_of(bad)


def test_folder_manifest_and_hash(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    # Same content created in a different order must hash the same.
    for folder, names in ((first, ["x.txt", "sub/y.bin"]), (second, ["sub/y.bin", "x.txt"])):
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(name.encode())
    entries = manifest(first)
    assert entries == {"sub/y.bin": b3(b"sub/y.bin"), "x.txt": b3(b"x.txt")}
    lines = "".join(f"{entries[k].removeprefix('blake3:')}  {k}\n" for k in sorted(entries))
    assert hash_path(first) == manifest_hash(entries) == b3(lines.encode())
    # The same folder as a record made before BLAKE3 hashed it: sha256 throughout.
    old = manifest(first, "sha256")
    assert old == {"sub/y.bin": sha(b"sub/y.bin"), "x.txt": sha(b"x.txt")}
    old_lines = "".join(f"{old[k].removeprefix('sha256:')}  {k}\n" for k in sorted(old))
    assert hash_path(first, "sha256") == manifest_hash(old, "sha256") == sha(old_lines.encode())
    # A line holds bare hex, so a manifest mixing algorithms has no folder hash.
    with pytest.raises(ProvenanceError, match=r"manifest entry x\.txt: .* is not a blake3 hash"):
        manifest_hash({**entries, "x.txt": sha(b"x.txt")})
    assert hash_path(first) == hash_path(second)
    # Snakemake's mtime marker in a directory() output is not content; a nested one would be.
    (second / ".snakemake_timestamp").write_text("")
    assert hash_path(first) == hash_path(second)
    (second / "sub" / ".snakemake_timestamp").write_text("")
    assert hash_path(first) != hash_path(second)
    (second / "sub" / ".snakemake_timestamp").unlink()
    (second / "x.txt").rename(second / "z.txt")
    assert hash_path(first) != hash_path(second)
    assert hash_path(first / "x.txt") == b3(b"x.txt")


def test_hashing_writer_matches_file_hash(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with atomic_file(target, "wb") as handle:
        writer = HashingWriter(handle)
        writer.write(b"abc")
        writer.write(bytearray(b"def" * 1000))
        writer.write(memoryview(b"ghi"))
    assert writer.hash == hash_file(target)
    assert writer.size == target.stat().st_size

    # Text writers (JSON) go through the standard buffered and text layers.
    text = tmp_path / "out.json"
    with atomic_file(text, "wb") as handle:
        writer = HashingWriter(handle)
        with io.TextIOWrapper(io.BufferedWriter(writer), encoding="utf-8") as stream:
            json.dump({"a": "é" * 10_000}, stream)
    assert writer.hash == hash_file(text)


def test_step_writes_a_record_for_every_artifact(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    Path("raw.txt").write_text("raw\n")
    Path("tool.py").write_text("print('hi')\n")
    with Step(
        "train",
        inputs={"data": "raw.txt"},
        outputs=outputs("results/models/m", "results/m.csv"),
        params={"lr": 0.1},
        wildcards={"id": "m"},
        seed=7,
        config={"train.lr": 0.1},
        code=["tool.py"],
    ) as step:
        with atomic_dir("results/models/m") as tmp:
            (tmp / "weights.bin").write_bytes(b"\x00\x01")
            (tmp / "nested").mkdir()
            (tmp / "nested" / "config.json").write_text("{}")
        Path("results/m.csv").write_text("a,b\n1,2\n")
        step.note(n_examples=3)

    folder = load_record("results/models/m")
    assert {k: folder[k] for k in ("path", "kind", "hash", "manifest")} == {
        "path": "results/models/m",
        "kind": "dir",
        "hash": hash_path("results/models/m"),
        "manifest": manifest("results/models/m"),
    }
    table = load_record("results/m.csv")
    assert "manifest" not in table
    assert {k: table[k] for k in ("path", "kind", "hash")} == {
        "path": "results/m.csv",
        "kind": "file",
        "hash": b3(b"a,b\n1,2\n"),
    }
    for record in (folder, table):
        assert record["schema"] == provenance.SCHEMA_VERSION
        assert record["rule"] == "train"
        assert record["inputs"] == {
            "data": [{"path": "raw.txt", "hash": b3(b"raw\n"), "sidecar": None}]
        }
        assert record["params"] == {"lr": 0.1}
        assert record["wildcards"] == {"id": "m"}
        assert record["seed"] == 7
        assert record["config"] == {"train.lr": 0.1}
        assert record["notes"] == {"n_examples": 3}
        assert record["code"]["files"] == {"tool.py": b3(b"print('hi')\n")}
        assert record["packages"]["python"]
        # Whatever is installed here, not a pinned number: the record must say what ran.
        assert record["packages"]["torch"] == importlib.metadata.version("torch")
        assert record["device"] == (
            torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        )
        assert record["host"]
        machine = record["machine"]
        assert machine["cpu"]["arch"] == platform.machine()
        assert machine["numerics"]["environment"]["ATEN_CPU_CAPABILITY"] == "default"
        # torch is imported by this test module, so the job's kernel level and threads are known.
        assert machine["numerics"]["kernels"] == torch.backends.cpu.get_cpu_capability()
        assert machine["numerics"]["threads"] == torch.get_num_threads()
        assert record["started"] <= record["ended"]
        assert record["duration_s"] >= 0
    # Sorted keys: records are diffable. Nothing of the record leaks into the artifacts.
    text = sidecar("results/m.csv").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    assert Path("results/m.csv").read_bytes() == b"a,b\n1,2\n"
    assert sorted(p.name for p in Path("results/models/m").rglob("*")) == [
        "config.json",
        "nested",
        "weights.bin",
    ]


def test_failed_block_writes_no_record(workdir: Path) -> None:
    Path("out.txt").write_text("old\n")
    sidecar("out.txt").write_text("{}")  # left by an earlier run
    with pytest.raises(RuntimeError), Step("s", {}, outputs("out.txt"), {}, {}):
        Path("out.txt").write_text("half-written\n")
        raise RuntimeError("boom")
    assert not sidecar("out.txt").exists()


def test_unwritten_output_is_an_error(workdir: Path) -> None:
    with (
        pytest.raises(ProvenanceError, match=r"output b\.txt was not written"),
        Step("s", {}, outputs("a.txt", "b.txt"), {}, {}),
    ):
        Path("a.txt").write_text("a")
    assert not sidecar("a.txt").exists()


def test_undeclared_sidecar_is_an_error(workdir: Path) -> None:
    with pytest.raises(ProvenanceError, match=r"results/model has no provenance sidecar"):
        Step("train", {}, {"model": "results/model"}, {}, {})
    with pytest.raises(ProvenanceError, match=r"x\.prov\.json belong to no declared output"):
        Step("train", {}, {"prov": "x.prov.json"}, {}, {})


def test_records_hold_relative_paths_only(workdir: Path) -> None:
    Path("raw.txt").write_text("raw\n")
    Path("tool.py").write_text("")
    out = workdir / "results" / "a.txt"
    with Step(
        "s",
        inputs={"raw": str(workdir / "raw.txt")},
        outputs={"a": str(out), "prov": str(sidecar(out))},
        params={},
        wildcards={},
        code=[str(workdir / "tool.py")],
    ):
        out.parent.mkdir()
        out.write_text("a\n")
    text = sidecar(out).read_text()
    assert str(workdir) not in text
    record = json.loads(text)
    assert record["path"] == "results/a.txt"
    assert record["inputs"]["raw"][0]["path"] == "raw.txt"
    assert list(record["code"]["files"]) == ["tool.py"]


def test_input_hashes_come_from_sidecars(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Step("make", {}, outputs("data.jsonl"), {}, {}):
        Path("data.jsonl").write_text('{"a": 1}\n')
    recorded = load_record("data.jsonl")["hash"]
    Path("raw.txt").write_text("raw\n")

    real_hash_path = provenance.hash_path

    def only_raw(path: str | os.PathLike) -> str:
        assert Path(path).name == "raw.txt", f"{path} has a sidecar and must not be re-read"
        return real_hash_path(path)

    monkeypatch.setattr(provenance, "hash_path", only_raw)
    with Step("use", {"data": "data.jsonl", "raw": ["raw.txt"]}, outputs("out.txt"), {}, {}):
        Path("out.txt").write_text("x")
    assert load_record("out.txt")["inputs"] == {
        "data": [{"path": "data.jsonl", "hash": recorded, "sidecar": "data.jsonl.prov.json"}],
        "raw": [{"path": "raw.txt", "hash": b3(b"raw\n"), "sidecar": None}],
    }


def test_set_hash_spares_a_second_read(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_hash_file = provenance.hash_file

    def refuse_weights(path: str | os.PathLike, *algorithm: str) -> str:
        assert Path(path).name != "weights.bin", "hashed while written; must not be re-read"
        return real_hash_file(path, *algorithm)

    # The step hashes its own files and, through the folder's manifest, those of an output folder.
    monkeypatch.setattr(provenance, "hash_file", refuse_weights)
    monkeypatch.setattr(hashing, "hash_file", refuse_weights)
    with Step("s", {}, outputs("tv.safetensors", "model"), {}, {}) as step:
        with atomic_file("tv.safetensors", "wb") as handle:
            writer = HashingWriter(handle)
            writer.write(b"\x01" * 1000)
        step.set_hash("tv.safetensors", writer.hash)
        with atomic_dir("model") as tmp:
            with atomic_file(tmp / "weights.bin", "wb") as handle:
                inner = HashingWriter(handle)
                inner.write(b"\x02" * 10)
            (tmp / "config.json").write_text("{}")
        step.set_hash("model/weights.bin", inner.hash)  # the final path, not the temporary one
        with pytest.raises(ProvenanceError, match="not an output"):
            step.set_hash("elsewhere.bin", writer.hash)
        with pytest.raises(ProvenanceError, match="not a blake3"):
            step.set_hash("tv.safetensors", "md5:00")
        # A folder's manifest holds one algorithm: a sha256 digest of a new file is refused.
        with pytest.raises(ProvenanceError, match="not a blake3"):
            step.set_hash("model/weights.bin", sha(b"\x02" * 10))
    assert load_record("tv.safetensors")["hash"] == b3(b"\x01" * 1000)
    model = load_record("model")
    assert model["manifest"] == {"config.json": b3(b"{}"), "weights.bin": b3(b"\x02" * 10)}
    assert model["hash"] == manifest_hash(model["manifest"])


def test_from_snakemake(workdir: Path) -> None:
    Path("in.txt").write_text("in\n")
    smk = Snakemake(
        input_=InputFiles(fromdict={"data": "in.txt"}),
        output=OutputFiles(["extra.txt", "extra.txt.prov.json"]),
        params=Params(fromdict={"lr": 0.5, "steps": [1, 2]}),
        wildcards=Wildcards(fromdict={"skill": "math"}),
        threads=1,
        resources=ResourceList(),
        log=Log(),
        config={"train": {"lr": 0.5, "steps": 10}, "seed": 3},
        rulename="train_model",
        bench_iteration=None,
        scriptdir=str(workdir),
    )
    smk.output.update({"model": "model.txt", "prov": "model.txt.prov.json"})
    step = Step.from_snakemake(smk, seed=3, config_keys=["train.lr", "seed"])
    assert step.artifacts == ["extra.txt", "model.txt"]
    with step:
        Path("model.txt").write_text("m")
        Path("extra.txt").write_text("e")
    record = load_record("model.txt")
    assert record["rule"] == "train_model"
    assert record["inputs"]["data"][0]["path"] == "in.txt"
    assert record["params"] == {"lr": 0.5, "steps": [1, 2]}
    assert record["wildcards"] == {"skill": "math"}
    assert record["config"] == {"train.lr": 0.5, "seed": 3}
    assert record["seed"] == 3
    code = record["code"]["files"]
    assert code[next(k for k in code if k.endswith("test_provenance.py"))] == hash_file(__file__)
    assert any(k.endswith("mtl/provenance.py") for k in code)
    assert any(k.endswith("mtl/io.py") for k in code)
    assert not any(os.path.isabs(k) for k in code)
    with pytest.raises(ProvenanceError, match=r"'train\.momentum' is not in the workflow config"):
        Step.from_snakemake(smk, config_keys=["train.momentum"])


def test_load_record_errors_name_the_sidecar(tmp_path: Path) -> None:
    artifact = tmp_path / "a.txt"
    with pytest.raises(ProvenanceError, match=r"no provenance record .*a\.txt\.prov\.json"):
        load_record(artifact)
    sidecar(artifact).write_text("{not json")
    with pytest.raises(ProvenanceError, match=r"record .*a\.txt\.prov\.json: unreadable"):
        load_record(artifact)
    sidecar(artifact).write_text("[]")
    with pytest.raises(ProvenanceError, match=r"a\.txt\.prov\.json: not a JSON object"):
        load_record(artifact)


def test_notes_are_checked(workdir: Path) -> None:
    Path("evals").mkdir()
    Path("evals/mmlu.json").write_text("{}")

    def table_step() -> Step:
        return Step("table", {"evals": ["evals"]}, outputs("t.csv"), {}, {}, config={"eval": {}})

    with (
        pytest.raises(ProvenanceError, match=r"cell a\|b depends on other\.json"),
        table_step() as step,
    ):
        step.note_cell("a", "b", ["other.json"])
        Path("t.csv").write_text("")
    with (
        pytest.raises(ProvenanceError, match="config 'seed', which is not in the step's config"),
        table_step() as step,
    ):
        step.note_cell("a", "b", ["evals/mmlu.json"], config=["seed"])
        Path("t.csv").write_text("")
    with (
        pytest.raises(ProvenanceError, match="derived entries need 'id' and 'recipe'"),
        table_step() as step,
    ):
        step.note(derived=[{"id": "m"}])
        Path("t.csv").write_text("")
    with (
        pytest.raises(ProvenanceError, match=r"use Step\.note_cell"),
        table_step() as step,
    ):
        step.note(cells={"a|b": ["evals"]})
        Path("t.csv").write_text("")
    assert not sidecar("t.csv").exists()
    with table_step() as step:
        with pytest.raises(ProvenanceError, match="separates row from column"):
            step.note_cell("a|b", "c", [])
        step.note_cell("a", "b", ["evals/mmlu.json"])
        with pytest.raises(ProvenanceError, match="noted twice"):
            step.note_cell("a", "b", ["evals"])
        step.note(derived=[{"id": "m", "recipe": {"omega": 0.5}, "path": "./models/m/"}])
        Path("t.csv").write_text("")
    assert load_record("t.csv")["notes"] == {
        "cells": {"a|b": {"artifacts": ["evals/mmlu.json"], "config": []}},
        "derived": [{"id": "m", "recipe": {"omega": 0.5}, "path": "models/m"}],
    }


def test_git_state(workdir: Path) -> None:
    def run_step() -> dict:
        with Step("s", {}, outputs("out.txt"), {}, {}):
            Path("out.txt").write_text("x")
        return load_record("out.txt")["code"]

    # tmp_path is outside any checkout: no commit, no dirty flag, and no failure.
    assert run_step() | {"files": {}} == {"git_commit": None, "git_dirty": None, "files": {}}
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    Path("tracked.txt").write_text("a")
    Path(".gitignore").write_text("out.txt*\n")
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "tracked.txt", ".gitignore"], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert run_step()["git_commit"] == head
    assert run_step()["git_dirty"] is False
    Path("tracked.txt").write_text("b")
    assert run_step()["git_dirty"] is True


CPUINFO = """processor\t: 0
model name\t: {model}
flags\t\t: {flags}

processor\t: 1
model name\t: another CPU
flags\t\t: fpu
"""


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ("fpu sse4_2 avx avx2 fma avx512f avx512bw avx512dq avx512vl amx_tile", "avx512"),
        ("fpu sse4_2 avx avx2 fma avx512f", "avx2"),  # AVX-512 foundation alone is not enough
        ("fpu sse4_2 avx", "avx"),
        ("fpu sse2", "baseline"),
    ],
)
def test_cpu_facts_name_the_model_and_instruction_set_level(flags: str, isa: str) -> None:
    cpu = machine._cpu(CPUINFO.format(model="Some CPU @ 2GHz", flags=flags))
    assert cpu == {"model": "Some CPU @ 2GHz", "isa": isa, "amx": "amx_tile" in flags}


def test_machine_facts_tell_machines_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    avx2 = CPUINFO.format(model="CPU A", flags="sse4_2 avx avx2 fma")
    avx512 = CPUINFO.format(model="CPU B", flags="sse4_2 avx avx2 fma avx512f avx512bw "
                            "avx512dq avx512vl")
    classes = []
    for text in (avx2, avx512):
        monkeypatch.setattr(machine.Path, "read_text", lambda self, text=text: text)
        classes.append(machine.machine_facts()["class"])
    assert classes[0] != classes[1]
    assert "avx2 (CPU A)" in classes[0] and "avx512 (CPU B)" in classes[1]
