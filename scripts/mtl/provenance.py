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
the numerics environment, GPUs with driver and CUDA; see `machine_facts`), started, ended,
duration_s.

Hashes name their algorithm: "blake3:<hex>" (BLAKE3, 256 bits) in new records, "sha256:<hex>" in
records written before BLAKE3 was adopted; both verify (`algorithm_of`). BLAKE3 is a
cryptographic hash too, and about 20x faster than sha256 on CPUs without SHA extensions, where
hashing every written model was half of a merge's CPU time. A folder's hash is the hash, by the
same algorithm, of its manifest written the way `b3sum` and `sha256sum` print it, one line per
file sorted by path ("<hex>  <relative posix path>\\n"), so a folder can be checked by hand
with standard tools:
    cd FOLDER && find . -type f ! -name .snakemake_timestamp | sed 's|^\\./||' | LC_ALL=C sort \\
        | xargs b3sum | b3sum          # sha256sum for a "sha256:" record
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import io
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Protocol, Self

import blake3

from mtl.io import read_json_object, write_json
from mtl.stepkit import NUMERICS_VARIABLES

SCHEMA_VERSION = 1
SIDECAR_SUFFIX = ".prov.json"
CHUNK_BYTES = 1 << 20
SNAKEMAKE_TIMESTAMP = ".snakemake_timestamp"
# Distribution names whose versions go into every record (those not installed are left out).
PACKAGES = (
    "torch",
    "transformers",
    "safetensors",
    "datasets",
    "lm_eval",
    "snakemake",
    "pandas",
    "numpy",
)
# File hashing is I/O bound and both hashes release the GIL, so threads speed up many-file folders.
HASH_THREADS = min(8, os.cpu_count() or 1)


class Hasher(Protocol):
    def update(self, data: Any, /) -> object: ...

    def hexdigest(self) -> str: ...


# The algorithms a record may name; HASH writes new records. Both give 256-bit (64 hex) digests.
HASHERS: dict[str, Any] = {"blake3": blake3.blake3, "sha256": hashlib.sha256}
HASH = "blake3"
_DIGEST = re.compile(r"([a-z0-9]+):[0-9a-f]{64}")


class ProvenanceError(Exception):
    """A provenance contract was broken or a record cannot be read."""


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


def new_hasher(algorithm: str = HASH) -> Hasher:
    """A fresh hash object of `algorithm` (a key of HASHERS); `finish` turns it into a digest."""
    return HASHERS[algorithm]()


def finish(hasher: Hasher, algorithm: str = HASH) -> str:
    """The "<algorithm>:<hex>" digest of `hasher`."""
    return f"{algorithm}:{hasher.hexdigest()}"


def algorithm_of(digest: str) -> str:
    """The algorithm a digest names ("blake3:<hex>" -> "blake3"); unknown or malformed ones are
    refused, naming the digest."""
    match = _DIGEST.fullmatch(digest) if isinstance(digest, str) else None
    if match is None or match.group(1) not in HASHERS:
        raise ProvenanceError(
            f"{digest!r} is not a digest ({' or '.join(f'{a}:<64 hex>' for a in HASHERS)})"
        )
    return match.group(1)


def hash_file(path: str | os.PathLike, algorithm: str = HASH) -> str:
    """Hash of a file's bytes, streamed in 1 MiB chunks, as "<algorithm>:<hex>"."""
    digest = new_hasher(algorithm)
    buffer = bytearray(CHUNK_BYTES)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while n := handle.readinto(buffer):
            digest.update(view[:n])
    return finish(digest, algorithm)


def manifest(path: str | os.PathLike, algorithm: str = HASH) -> dict[str, str]:
    """{relative posix path: file hash} for every file under the folder `path`.

    Snakemake's `.snakemake_timestamp` marker at the top of a folder is not part of its content.
    """
    return _manifest(Path(path), {}, algorithm)


def _manifest(root: Path, known: Mapping[str, str], algorithm: str = HASH) -> dict[str, str]:
    """Like `manifest`, but files whose hash is in `known` (hashed while written) are not read."""
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder: {root}")
    files = []
    for dirpath, _, filenames in os.walk(root):
        files.extend((Path(dirpath) / name).relative_to(root).as_posix() for name in filenames)
    # Snakemake drops this mtime marker into directory() outputs after the job: not content.
    files = [rel for rel in files if rel != SNAKEMAKE_TIMESTAMP]
    todo = [rel for rel in files if rel not in known]
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        fresh = dict(
            zip(todo, pool.map(lambda rel: hash_file(root / rel, algorithm), todo), strict=True)
        )
    return {rel: known[rel] if rel in known else fresh[rel] for rel in sorted(files)}


def manifest_hash(entries: Mapping[str, str], algorithm: str = HASH) -> str:
    """The folder hash of a manifest: `algorithm` over its `b3sum`/`sha256sum`-style lines.

    Every entry must be of `algorithm` too: a line holds the bare hex, which would not say how
    it was made.
    """
    digest = new_hasher(algorithm)
    for rel in sorted(entries):
        if algorithm_of(entries[rel]) != algorithm:
            raise ProvenanceError(
                f"manifest entry {rel}: {entries[rel]!r} is not a {algorithm} hash"
            )
        digest.update(f"{entries[rel].removeprefix(algorithm + ':')}  {rel}\n".encode())
    return finish(digest, algorithm)


def hash_path(path: str | os.PathLike, algorithm: str = HASH) -> str:
    """Content hash of a file, or of a folder via its manifest."""
    path = Path(path)
    if path.is_dir():
        return manifest_hash(manifest(path, algorithm), algorithm)
    return hash_file(path, algorithm)


class HashingWriter(io.RawIOBase):
    """Binary file-like wrapper that hashes bytes as they pass, so big writers need no re-read.

    Use it inside `atomic_file(path, "wb")`, then hand `writer.hash` to `Step.set_hash(path, ...)`.
    Closing it leaves the wrapped handle open: `atomic_file` still has to fsync and rename it.
    """

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._digest = new_hasher()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = self._raw.write(view)
        # Hash only what the wrapped handle accepted; a caller re-sends the rest.
        written = len(view) if written is None else written
        self._digest.update(view[:written])
        self.size += written
        return written

    def flush(self) -> None:
        if not self._raw.closed:
            self._raw.flush()

    @property
    def hash(self) -> str:
        return finish(self._digest)


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


def _relative(path: str | os.PathLike, cwd: Path) -> str:
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


def _git_state(cwd: Path) -> dict[str, Any]:
    """Commit and dirty flag of the checkout; both None outside a git checkout (never fails)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        # Outputs are not code: the tables committed under results/ change with every run.
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":(exclude)results"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(status.strip())}


def _package_versions() -> dict[str, str]:
    # Metadata only: importing torch & co. just to read a version would cost seconds per job.
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _device() -> str:
    # Only consult torch if the job imported it; a job that never did ran on the CPU.
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return str(torch.cuda.get_device_name())
    return "cpu"


# CPU instruction-set levels, best first, with the /proc/cpuinfo flags each needs.
ISA_LEVELS = (
    ("avx512", {"avx512f", "avx512bw", "avx512dq", "avx512vl"}),
    ("avx2", {"avx2", "fma"}),
    ("avx", {"avx"}),
    ("sse4_2", {"sse4_2"}),
)


def _cpu(cpuinfo: str) -> dict[str, Any]:
    """CPU model and instruction-set level from /proc/cpuinfo text (the first processor)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the end of the first processor's block
            continue
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    isa = next((name for name, need in ISA_LEVELS if need <= flags), "baseline")
    return {
        "model": fields.get("model name"),
        "isa": isa,
        "amx": "amx_tile" in flags,
    }


def _gpus(torch: Any) -> dict[str, Any] | None:
    if not torch.cuda.is_available():
        return None
    try:
        driver = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split("\n")[0].strip()
    except (OSError, subprocess.SubprocessError):
        driver = None
    count = torch.cuda.device_count()
    return {
        "names": [torch.cuda.get_device_name(i) for i in range(count)],
        "capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "driver": driver,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def machine_facts() -> dict[str, Any]:
    """What tells two machines apart where numbers are concerned.

    `class` names the hardware (architecture, CPU model and level, GPUs); `numerics` what the
    job's kernels were pinned to (torch's dispatch level, threads, the numerics environment).
    Torch facts are read only when the job imported torch: a job that did not computed no floats.
    """
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    cpu = _cpu(cpuinfo)
    cpu["arch"] = platform.machine()
    cpu["cores"] = os.cpu_count()
    cpu["usable_cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    torch = sys.modules.get("torch")
    numerics: dict[str, Any] = {
        "environment": {name: os.environ.get(name) for name in NUMERICS_VARIABLES}
    }
    gpu = None
    if torch is not None:
        numerics.update(
            kernels=torch.backends.cpu.get_cpu_capability(),
            threads=torch.get_num_threads(),
            interop_threads=torch.get_num_interop_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
        )
        gpu = _gpus(torch)
    gpus = ", ".join(gpu["names"]) if gpu else "no GPU"
    return {
        "class": f"{cpu['arch']} {cpu['isa']} ({cpu['model'] or 'unknown CPU'}), {gpus}",
        "cpu": cpu,
        "gpu": gpu,
        "numerics": numerics,
        "os": platform.platform(),
        "libc": " ".join(platform.libc_ver()).strip() or None,
    }


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
            name: [_relative(p, self.cwd) for p in _as_list(paths)]
            for name, paths in inputs.items()
        }
        declared = [_relative(p, self.cwd) for paths in outputs.values() for p in _as_list(paths)]
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
            **_git_state(self.cwd),
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
        rel = _relative(path, self.cwd)
        if not any(rel == a or rel.startswith(a + "/") for a in self.artifacts):
            raise ProvenanceError(f"rule {self.rule}: {rel} is not an output of this step")
        # A folder's manifest holds one algorithm, the one this step hashes its other files with.
        if not (isinstance(digest, str) and _DIGEST.fullmatch(digest)) or (
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
            "artifacts": [_relative(p, self.cwd) for p in artifacts],
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
                {**entry, "path": _relative(entry["path"], self.cwd)} if "path" in entry else entry
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
            files = _manifest(path, inside)
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
            "packages": _package_versions(),
            "device": _device(),
            "host": socket.gethostname(),
            "machine": machine_facts(),
            "ended": _now(),
            "duration_s": round(time.monotonic() - self._clock, 3),
        }
        # Hash everything first, then write: the window with some records written stays short.
        for entry in entries:
            write_json(sidecar(entry["path"]), {**common, **entry})


# ---- replacing outputs ---------------------------------------------------------------------
# A workflow rerun deletes a job's outputs before the job runs (Snakemake does, for folders), and
# an existing output is taken as built. Both are safe only for what this workflow wrote: an
# output whose record lists every file in it. Anything else belongs to someone else.


class ForeignOutputError(ProvenanceError):
    """An output path holds something this workflow did not write; nothing was deleted."""


def _files_under(folder: Path) -> list[str]:
    return sorted(
        (Path(dirpath) / name).relative_to(folder).as_posix()
        for dirpath, _, names in os.walk(folder)
        for name in names
    )


def record_problem(path: str | os.PathLike) -> str | None:
    """Why the existing `path` is not an output of this workflow (no record of it, a record
    of another path or kind, an unreadable record); None when it is absent or recorded."""
    path = Path(os.path.normpath(path))
    if not os.path.lexists(path):
        return None
    if not sidecar(path).exists():
        return f"{path.as_posix()}: exists, but has no provenance record {sidecar(path).as_posix()}"
    try:
        record = load_record(path)
    except ProvenanceError as err:
        return f"{path.as_posix()}: {err}"
    # Records name their artifact relative to the working directory the step ran in.
    if record["path"] != _relative(path, Path.cwd().resolve()):
        return f"{path.as_posix()}: its record {sidecar(path).as_posix()} is of {record['path']}"
    kind = "dir" if path.is_dir() else "file"
    if record.get("kind", kind) != kind:
        return f"{path.as_posix()}: a {kind}, but its record describes a {record['kind']}"
    return None


def replace_problem(path: str | os.PathLike) -> str | None:
    """Why the existing output `path` must not be replaced: it is foreign (`record_problem`),
    or it is a folder holding files its record does not list. None when this workflow wrote
    everything in it (or it is absent)."""
    problem = record_problem(path)
    path = Path(os.path.normpath(path))
    if problem or not path.is_dir():
        return problem
    listed = load_record(path).get("manifest", {})
    extra = [rel for rel in _files_under(path) if rel not in listed and rel != SNAKEMAKE_TIMESTAMP]
    if not extra:
        return None
    return f"{path.as_posix()}: holds file(s) its provenance record does not list: " + ", ".join(
        (path / rel).as_posix() for rel in extra
    )


def recorded(outputs: Iterable[Any]) -> list[Any]:
    """The outputs among a job's or rule's `outputs` whose record is declared beside them (the
    records themselves are the workflow's own bookkeeping)."""
    outputs = list(outputs)
    declared = {os.fspath(f) for f in outputs}
    return [f for f in outputs if not is_sidecar(f) and sidecar(f).as_posix() in declared]


def refusal(problems: Sequence[str], action: str) -> ForeignOutputError:
    """One error for every problem found, saying what was not done and how to go on."""
    return ForeignOutputError(
        f"{action}: this workflow did not write everything in these output paths, and deletes"
        " nothing it did not write (nothing was deleted):\n"
        + "".join(f"  {problem}\n" for problem in problems)
        + "Move each named file or folder out of the way (e.g. `mv PATH ~/kept/`), then run"
        " again; a folder left half-written by a killed run can be removed."
    )


def check_replaceable(paths: Iterable[str | os.PathLike], action: str) -> None:
    """Raise `ForeignOutputError` naming every path in `paths` that must not be replaced."""
    problems = [p for p in dict.fromkeys(map(replace_problem, paths)) if p]
    if problems:
        raise refusal(problems, action)


def foreign_outputs(
    roots: Iterable[str | os.PathLike], patterns: Sequence[re.Pattern[str]]
) -> list[str]:
    """Every existing path under `roots` that matches an output pattern of the workflow but
    is not recorded as its output (`record_problem`). A matched folder is one artifact: its
    contents are not visited, so this reads no model file."""
    problems = []
    for root in sorted(set(map(os.fspath, roots))):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames:
                rel = Path(dirpath, name).as_posix()
                if not is_sidecar(rel) and any(p.match(rel) for p in patterns):
                    problems.append(record_problem(rel))
            for name in list(dirnames):
                rel = Path(dirpath, name).as_posix()
                if any(p.match(rel) for p in patterns):
                    dirnames.remove(name)
                    problems.append(record_problem(rel))
            dirnames.sort()
    return sorted(p for p in problems if p)
