"""Provenance records: every artifact X (file or folder) gets a sidecar `X.prov.json`.

A step program wraps its work in a `Step`; on success the step writes one record per artifact
saying what it was built from (inputs with their content hashes and the sidecars those hashes
came from), by which rule, parameters, config, seed and code, on which machine, and when.
`mtl.audit` walks these records back to the raw data and re-checks every hash.

A record (sorted keys, paths relative to the working directory) holds: schema, path, kind
("file"/"dir"), hash, manifest (folders: {relative path: hash}), inputs ({name: [{path, hash,
sidecar}]}; sidecar is None for raw data), rule, wildcards, params, config (the slice at the
step's dotted keys), seed, notes (step.note facts; `cells` and `derived` are read by the audit),
code ({git_commit, git_dirty, files: {path: hash}}), packages, device, host, machine (what
tells machines apart: CPU model and instruction sets, the kernel level and threads torch used,
the numerics environment, GPUs with driver and CUDA; see `mtl.machine.machine_facts`), started,
ended, duration_s.

Hashes: mtl.hashing; the machine and package facts: mtl.machine; which outputs a rerun may
replace: mtl.replacing.
"""

from __future__ import annotations

import inspect
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mtl.hashing import (
    DIGEST,
    HASH,
    ProvenanceError,
    algorithm_of,
    hash_file,
    hash_path,
    manifest,
    manifest_hash,
)
from mtl.io import read_json_object, write_json
from mtl.machine import device, git_state, machine_facts, package_versions

SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".prov.json"


def sidecar(path: str | os.PathLike) -> Path:
    """The record of `path`: `results/models/general/` -> `results/models/general.prov.json`."""
    path = Path(path)
    if not path.name:
        raise ProvenanceError(f"{os.fspath(path)!r} names no file or folder")
    return path.with_name(path.name + SIDECAR_SUFFIX)


def is_sidecar(path: str | os.PathLike) -> bool:
    return os.fspath(path).endswith(SIDECAR_SUFFIX)


def artifact_of(sidecar_path: str | os.PathLike) -> Path:
    """Inverse of `sidecar`."""
    text = os.fspath(sidecar_path)
    if not is_sidecar(text):
        raise ProvenanceError(f"{text} is not a sidecar (no {SIDECAR_SUFFIX} suffix)")
    return Path(text[: -len(SIDECAR_SUFFIX)])

def load_record(artifact: str | os.PathLike) -> dict:
    """The record of `artifact`; a missing or unreadable sidecar is named in the error."""
    path = sidecar(artifact)

    def error(reason: str) -> ProvenanceError:
        if reason == "missing":
            return ProvenanceError(f"no provenance record {path} for {artifact}")
        return ProvenanceError(f"provenance record {path}: {reason}")

    record = read_json_object(path, error)
    if not {"path", "hash", "inputs"} <= record.keys():
        raise ProvenanceError(f"{path} is not a provenance record (no path, hash or inputs)")
    if record.get("schema", 0) > SCHEMA_VERSION:
        raise ProvenanceError(
            f"{path} has schema {record['schema']}; this code reads up to {SCHEMA_VERSION}"
        )
    return record


def config_lookup(config: Mapping, key: str) -> Any:
    """Value of a dotted `key` in `config`, whose own keys may themselves be dotted (a slice)."""
    if key in config:
        return config[key]
    parts = key.split(".")
    # Longest recorded prefix first: a slice may hold "eval" or "eval.fewshot" as one key.
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in config:
            node = config[head]
            for part in parts[cut:]:
                if not isinstance(node, Mapping) or part not in node:
                    raise KeyError(key)
                node = node[part]
            return node
    raise KeyError(key)


def config_slice(config: Mapping, keys: Sequence[str]) -> dict[str, Any]:
    """{dotted key: value} for the keys a step depends on; an absent key is an error."""
    picked = {}
    for key in keys:
        try:
            picked[key] = config_lookup(config, key)
        except KeyError:
            raise ProvenanceError(f"config key {key!r} is not in the workflow config") from None
    return picked


def _as_list(value: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(value, (str, os.PathLike)):
        return [os.fspath(value)]
    return [os.fspath(item) for item in value]


def relative_path(path: str | os.PathLike, cwd: Path) -> str:
    """Posix path relative to `cwd`, so records do not depend on where the checkout lives."""
    return Path(os.path.relpath(os.path.abspath(path), cwd)).as_posix()


def _code_key(path: Path, cwd: Path) -> str:
    """Relative name of a code file: to the working directory, else to its sys.path entry."""
    resolved = path.resolve()
    if resolved.is_relative_to(cwd):
        return resolved.relative_to(cwd).as_posix()
    for entry in sorted((Path(p).resolve() for p in sys.path if p), key=lambda p: -len(p.parts)):
        if resolved.is_relative_to(entry):
            return resolved.relative_to(entry).as_posix()
    return resolved.name


def _mtl_modules() -> list[Path]:
    package = Path(__file__).resolve().parent
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _calling_script() -> Path | None:
    """The first caller outside the mtl package: the step program, even behind a helper."""
    package = Path(__file__).resolve().parent
    frame = inspect.currentframe()
    while frame is not None:
        # Snakemake runs a temporary copy of the script but points __file__ at the real one.
        name = frame.f_globals.get("__file__")
        if name and not Path(name).resolve().is_relative_to(package):
            return Path(name)
        frame = frame.f_back
    return None


def _named_paths(namedlist: Any) -> dict[str, list[str]]:
    """Snakemake's input/output namedlist as {name: [paths]}; unnamed entries go to "unnamed"."""
    named = {name: _as_list(value) for name, value in namedlist.items()}
    seen = {path for paths in named.values() for path in paths}
    unnamed = [os.fspath(path) for path in namedlist if os.fspath(path) not in seen]
    if unnamed:
        named["unnamed"] = unnamed
    return named


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Step:
    """Context manager for one job: records inputs on entry, writes every sidecar on success.

    Outputs ending in `.prov.json` are sidecars; every other output is an artifact and must have
    its sidecar among the outputs. A block that raises writes no sidecar.
    """

    def __init__(
        self,
        rule: str,
        inputs: Mapping[str, str | list[str]],
        outputs: Mapping[str, str | list[str]],
        params: Mapping,
        wildcards: Mapping,
        seed: int | None = None,
        config: Mapping | None = None,
        code: Sequence[str] = (),
    ) -> None:
        self.rule = rule
        self.cwd = Path.cwd().resolve()
        self.inputs = {
            name: [relative_path(p, self.cwd) for p in _as_list(paths)]
            for name, paths in inputs.items()
        }
        declared = [
            relative_path(p, self.cwd) for paths in outputs.values() for p in _as_list(paths)
        ]
        sidecars = {p for p in declared if is_sidecar(p)}
        self.artifacts = sorted({p for p in declared if not is_sidecar(p)})
        for artifact in self.artifacts:
            if sidecar(artifact).as_posix() not in sidecars:
                raise ProvenanceError(
                    f"rule {rule}: output {artifact} has no provenance sidecar among the outputs;"
                    f' declare prov="{sidecar(artifact).as_posix()}" in the rule\'s output'
                )
        orphans = sorted(sidecars - {sidecar(a).as_posix() for a in self.artifacts})
        if orphans:
            raise ProvenanceError(
                f"rule {rule}: sidecar output(s) {', '.join(orphans)} belong to no declared output"
            )
        self.params = dict(params)
        self.wildcards = dict(wildcards)
        self.seed = seed
        self.config = dict(config or {})
        self.code = [Path(p) for p in code]
        self._given: dict[str, str] = {}  # output file -> hash, from writers that hashed on write
        self._notes: dict[str, Any] = {}
        self._record: dict[str, Any] = {}
        self._clock = 0.0

    @classmethod
    def from_snakemake(
        cls, smk: Any, seed: int | None = None, config_keys: Sequence[str] = ()
    ) -> Step:
        """Build from snakemake's `script:` object; code = the calling script + the mtl package."""
        script = _calling_script()
        return cls(
            rule=smk.rule,
            inputs=_named_paths(smk.input),
            outputs=_named_paths(smk.output),
            params=dict(smk.params.items()),
            wildcards=dict(smk.wildcards.items()),
            seed=seed,
            config=config_slice(smk.config, config_keys),
            code=[str(p) for p in [*([script] if script else []), *_mtl_modules()]],
        )

    def __enter__(self) -> Self:
        self._clock = time.monotonic()
        self._record["started"] = _now()
        # A record left from an earlier run must not vouch for whatever this run leaves behind.
        for artifact in self.artifacts:
            sidecar(artifact).unlink(missing_ok=True)
        raw: dict[str, str] = {}
        self._record["inputs"] = {
            name: [self._input_entry(path, raw) for path in paths]
            for name, paths in self.inputs.items()
        }
        self._record["code"] = {
            **git_state(self.cwd),
            "files": {_code_key(p, self.cwd): hash_file(p) for p in self.code},
        }
        return self

    @staticmethod
    def _input_entry(path: str, raw: dict[str, str]) -> dict[str, str | None]:
        record_path = sidecar(path)
        if record_path.exists():
            # The producer already hashed it: reading a multi-GB model again would double I/O.
            return {
                "path": path,
                "hash": load_record(path)["hash"],
                "sidecar": record_path.as_posix(),
            }
        if path not in raw:
            raw[path] = hash_path(path)
        return {"path": path, "hash": raw[path], "sidecar": None}

    def set_hash(self, path: str | os.PathLike, digest: str) -> None:
        """Give the hash of an output file (or a file inside an output folder) hashed on write."""
        rel = relative_path(path, self.cwd)
        if not any(rel == a or rel.startswith(a + "/") for a in self.artifacts):
            raise ProvenanceError(f"rule {self.rule}: {rel} is not an output of this step")
        # A folder's manifest holds one algorithm, the one this step hashes its other files with.
        if not (isinstance(digest, str) and DIGEST.fullmatch(digest)) or (
            algorithm_of(digest) != HASH
        ):
            raise ProvenanceError(f"rule {self.rule}: {digest!r} is not a {HASH}:<hex> digest")
        self._given[rel] = digest

    @property
    def identity(self) -> dict[str, Any]:
        """The hashes of this step's inputs and code (known once the step is entered): what a
        partial result must match to be reused by a rerun."""
        return {"inputs": self._record["inputs"], "code": self._record["code"]["files"]}

    def note(self, **facts: Any) -> None:
        """Add facts to every record of this step (n_examples, omega, hub revision, derived...).

        `derived=[{"id": str, "recipe": {...}, "path": str (optional)}]` lists models that were
        evaluated without being written; `path` is where the model would live if it were kept.
        """
        self._notes.update(facts)

    def note_cell(
        self, row: str, column: str, artifacts: Sequence[str], config: Sequence[str] = ()
    ) -> None:
        """Record that table cell (row, column) is computed from `artifacts` and config keys.

        Artifacts are step inputs or files inside input folders (e.g. one suite's JSON of an
        eval folder); config keys must be in the step's config slice. Checked on success.
        """
        if "|" in f"{row}{column}":
            raise ProvenanceError(f"cell ({row!r}, {column!r}): '|' separates row from column")
        cells = self._notes.setdefault("cells", {})
        key = f"{row}|{column}"
        if key in cells:
            raise ProvenanceError(f"rule {self.rule}: cell {key} noted twice")
        cells[key] = {
            "artifacts": [relative_path(p, self.cwd) for p in artifacts],
            "config": list(config),
        }

    def _check_notes(self) -> None:
        inputs = {p for paths in self.inputs.values() for p in paths}
        for key, cell in self._notes.get("cells", {}).items():
            if not isinstance(cell, Mapping) or set(cell) != {"artifacts", "config"}:
                raise ProvenanceError(
                    f"rule {self.rule}: cell {key} must be {{'artifacts': [...], 'config': [...]}}"
                    " (use Step.note_cell)"
                )
            for path in cell["artifacts"]:
                if not any(path == i or path.startswith(i + "/") for i in inputs):
                    raise ProvenanceError(
                        f"rule {self.rule}: cell {key} depends on {path}, which is not an input"
                    )
            for name in cell["config"]:
                try:
                    config_lookup(self.config, name)
                except KeyError:
                    raise ProvenanceError(
                        f"rule {self.rule}: cell {key} depends on config {name!r}, which is not"
                        " in the step's config slice"
                    ) from None
        if "derived" in self._notes:
            derived = self._notes["derived"]
            for entry in derived:
                if not isinstance(entry, Mapping) or "id" not in entry or "recipe" not in entry:
                    raise ProvenanceError(
                        f"rule {self.rule}: derived entries need 'id' and 'recipe', got {entry!r}"
                    )
            self._notes["derived"] = [
                {**entry, "path": relative_path(entry["path"], self.cwd)}
                if "path" in entry
                else entry
                for entry in derived
            ]

    def _artifact_entry(self, artifact: str) -> dict[str, Any]:
        path = Path(artifact)
        if path.is_dir():
            inside = {
                rel[len(artifact) + 1 :]: digest
                for rel, digest in self._given.items()
                if rel.startswith(artifact + "/")
            }
            files = manifest(path, known=inside)
            digest = manifest_hash(files)
            return {"path": artifact, "kind": "dir", "hash": digest, "manifest": files}
        if path.is_file():
            digest = self._given.get(artifact) or hash_file(path)
            return {"path": artifact, "kind": "file", "hash": digest}
        raise ProvenanceError(f"rule {self.rule}: output {artifact} was not written")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            return
        self._check_notes()
        entries = [self._artifact_entry(a) for a in self.artifacts]
        common = {
            **self._record,
            "schema": SCHEMA_VERSION,
            "rule": self.rule,
            "wildcards": self.wildcards,
            "params": self.params,
            "config": self.config,
            "seed": self.seed,
            "notes": self._notes,
            "packages": package_versions(),
            "device": device(),
            "host": socket.gethostname(),
            "machine": machine_facts(),
            "ended": _now(),
            "duration_s": round(time.monotonic() - self._clock, 3),
        }
        # Hash everything first, then write: the window with some records written stays short.
        for entry in entries:
            write_json(sidecar(entry["path"]), {**common, **entry})
