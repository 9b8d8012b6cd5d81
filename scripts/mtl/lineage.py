"""The audit's walk: each artifact's provenance record back to the raw data, every path re-hashed
once, each artifact given a status (mtl.audit explains them) and the reasons for it."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl.hashing import HASH, algorithm_of, hash_file, manifest, manifest_hash
from mtl.machine import numerics_summary
from mtl.provenance import (
    ProvenanceError,
    artifact_of,
    config_lookup,
    is_sidecar,
    load_record,
    sidecar,
)

VERIFIED = "verified"
MODIFIED = "modified"
STALE = "stale"
MISSING = "missing"
NO_RECORD = "no-record"
FOREIGN = "foreign"
NOT_BUILT = "not-built"
# Worst first: a table cell takes the worst status of the artifacts it depends on.
STATUSES = (MODIFIED, STALE, FOREIGN, NO_RECORD, MISSING, NOT_BUILT, VERIFIED)
# How a reader builds what is not built here yet (the README's command).
BUILD_COMMAND = "snakemake --cores 2"


class AuditError(Exception):
    """The audit was asked for something the records cannot answer."""


def short(digest: str | None) -> str:
    if digest is None:
        return "none"
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}"


def algorithm_like(digest: str) -> str:
    """The algorithm to hash with for a comparison with `digest`: the one it names (records made
    before BLAKE3 say sha256), or the current one for a malformed digest, which then differs."""
    try:
        return algorithm_of(digest)
    except ProvenanceError:
        return HASH


@dataclass
class Edge:
    name: str
    path: str
    recorded_hash: str


@dataclass
class Node:
    path: str
    status: str = VERIFIED
    exists: bool = True
    kind: str | None = None  # "file", "dir", "virtual" (noted by a consumer, never written)
    record: dict | None = None
    disk_hash: str | None = None
    reproducible: bool | None = None
    recipe: str | None = None
    reasons: list[str] = field(default_factory=list)  # about its own content or record
    stale: list[str] = field(default_factory=list)  # about what it was built from
    origins: list[str] = field(default_factory=list)  # the changed artifacts behind `stale`
    changed_files: list[str] = field(default_factory=list)  # inside a folder
    inputs: list[Edge] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    code_changed: list[str] = field(default_factory=list)
    other_machines: list[str] = field(default_factory=list)  # inputs built elsewhere

    @property
    def recorded_hash(self) -> str | None:
        return self.record["hash"] if self.record else None

    @property
    def problem(self) -> bool:
        if self.status == MISSING:
            return not self.reproducible
        return self.status not in (VERIFIED, NOT_BUILT)

    def label(self) -> str:
        text = self.status.upper() if self.problem else self.status
        return f"{text} (reproducible)" if self.status == MISSING and self.reproducible else text

    def to_json(self) -> dict[str, Any]:
        record = self.record or {}
        return {
            "status": self.status,
            "problem": self.problem,
            "exists": self.exists,
            "kind": self.kind,
            "sidecar": sidecar(self.path).as_posix() if self.record else None,
            "rule": record.get("rule"),
            "wildcards": record.get("wildcards"),
            "recorded_hash": self.recorded_hash,
            "disk_hash": self.disk_hash,
            "reproducible": self.reproducible,
            "recipe": self.recipe,
            "reasons": self.reasons,
            "stale_inputs": self.stale,
            "stale_because": self.origins,
            "changed_files": self.changed_files,
            "inputs": [vars(edge) for edge in self.inputs],
            "derived": self.derived,
            "code_changed": self.code_changed,
            "other_machines": self.other_machines,
            "machine": record.get("machine"),
        }


class Auditor:
    """Walks records under `root`; every path is hashed at most once per Auditor."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: dict[str, Node] = {}
        self._hashes: dict[tuple[str, str], str] = {}
        self._manifests: dict[tuple[str, str], dict[str, str]] = {}
        # path -> recipe text, for models that consumers evaluated without writing them.
        self._recipes: dict[str, str] = {}
        self._scanned = False

    def key(self, target: str) -> str:
        """Record-style key of a command-line target: relative to root, posix, no sidecar suffix."""
        path = Path(target)
        if path.is_absolute():
            path = Path(os.path.relpath(path, self.root.resolve()))
        text = Path(os.path.normpath(path)).as_posix()
        return artifact_of(text).as_posix() if is_sidecar(text) else text

    def target(self, target: str) -> str:
        key = self.key(target)
        node = self.visit(key)
        # A target is audited to learn where it came from, so it must have a record.
        if node.record is None and node.exists and node.status == VERIFIED:
            node.status = FOREIGN
            node.reasons.append(f"no provenance record {sidecar(key).as_posix()}")
        return key

    def hash_like(self, key: str, digest: str) -> str:
        """The content hash of `key` on disk, by the algorithm of `digest` it is compared with."""
        algorithm = algorithm_like(digest)
        if (key, algorithm) not in self._hashes:
            full = self.root / key
            self._hashes[key, algorithm] = (
                manifest_hash(self._manifest(key, algorithm), algorithm)
                if full.is_dir()
                else hash_file(full, algorithm)
            )
        return self._hashes[key, algorithm]

    def _manifest(self, key: str, algorithm: str) -> dict[str, str]:
        if (key, algorithm) not in self._manifests:
            self._manifests[key, algorithm] = manifest(self.root / key, algorithm)
        return self._manifests[key, algorithm]

    def visit(self, key: str) -> Node:
        if key in self.nodes:
            return self.nodes[key]
        # Registered before its inputs are walked, so a (hand-made) cyclic record terminates.
        node = self.nodes[key] = Node(key)
        full = self.root / key
        node.exists = full.exists()
        if node.exists:
            node.kind = "dir" if full.is_dir() else "file"
        if sidecar(full).exists():
            try:
                node.record = load_record(full)
            except ProvenanceError as err:
                node.status = NO_RECORD
                node.reasons.append(str(err))
                return node
            self._check_record(node)
        elif not node.exists:
            node.status = MISSING
            node.recipe = self._recipe(key)
            node.reproducible = node.recipe is not None
        return node

    def _check_record(self, node: Node) -> None:
        record = node.record
        assert record is not None
        if node.exists:
            self._check_content(node, record)
        else:
            node.kind = record.get("kind")
            node.status = MISSING
            node.reproducible = True
            node.recipe = f"not kept; rule {record.get('rule')} rebuilds it (its record is kept)"
        self._register_derived(node.path, record)
        for name, entries in sorted(record["inputs"].items()):
            for entry in entries:
                child = self.visit(entry["path"])
                node.inputs.append(Edge(name, entry["path"], entry["hash"]))
                self._check_edge(node, name, entry, child)
        for entry in record.get("notes", {}).get("derived", []):
            node.derived.append(self._derived_node(node, entry).path)
        code = record.get("code", {}).get("files", {})
        node.code_changed = sorted(
            name
            for name, digest in code.items()
            if (self.root / name).is_file() and self.hash_like(name, digest) != digest
        )
        node.origins = sorted(set(node.origins))
        if node.stale and node.status in (VERIFIED, MISSING):
            node.status = STALE

    def _check_content(self, node: Node, record: dict[str, Any]) -> None:
        recorded_kind = record.get("kind", "file")
        if recorded_kind != node.kind:
            node.status = MODIFIED
            node.reasons.append(f"recorded as a {recorded_kind}, now a {node.kind}")
            return
        node.disk_hash = self.hash_like(node.path, record["hash"])
        if node.disk_hash == record["hash"]:
            return
        node.status = MODIFIED
        node.reasons.append(
            f"content {short(node.disk_hash)} differs from its record {short(record['hash'])}"
        )
        if node.kind == "dir":
            now = self._manifest(node.path, algorithm_like(record["hash"]))
            then = record.get("manifest", {})
            groups = {
                "changed": sorted(rel for rel in now.keys() & then.keys() if now[rel] != then[rel]),
                "added": sorted(now.keys() - then.keys()),
                "removed": sorted(then.keys() - now.keys()),
            }
            node.changed_files = sorted(rel for rels in groups.values() for rel in rels)
            node.reasons.extend(f"{how}: {', '.join(rels)}" for how, rels in groups.items() if rels)

    def _same_bytes(self, child: Node, recorded: str) -> bool:
        """Whether `child`, whose record's hash is by another algorithm than `recorded` (a record
        made before BLAKE3 names a sha256), still holds the bytes `recorded` was taken of."""
        if not child.exists or child.status == MODIFIED or child.recorded_hash is None:
            return False
        if algorithm_like(child.recorded_hash) == algorithm_like(recorded):
            return False
        return self.hash_like(child.path, recorded) == recorded

    def _check_edge(self, node: Node, name: str, entry: dict[str, Any], child: Node) -> None:
        label = f"input {name} {entry['path']}"
        recorded = entry["hash"]
        if child.record is not None:
            self._compare_machines(node, entry["path"], child)
            if child.recorded_hash != recorded and not self._same_bytes(child, recorded):
                node.stale.append(
                    f"{label} was rebuilt after this was built (used {short(recorded)}, its record"
                    f" now says {short(child.recorded_hash)})"
                )
                node.origins.append(child.path)
            elif child.status == MODIFIED:
                node.stale.append(f"{label} is modified")
                node.origins += [child.path, *child.origins]
            elif child.status == STALE:
                node.stale.append(f"{label} is stale (because of {', '.join(child.origins)})")
                node.origins += child.origins
            return
        if not child.exists:
            if entry.get("sidecar") and child.status == MISSING and not child.reproducible:
                # A workflow artifact (it had a record when it was read) never built here.
                child.status = NOT_BUILT
                child.reproducible = True
                child.recipe = (
                    f"not built on this machine yet: `{BUILD_COMMAND} {child.path}` builds it"
                )
            elif child.status != NOT_BUILT:
                child.reasons.append(f"recorded as input {name} of {node.path}")
            return
        # An unreadable sidecar already made it no-record, with the reason why.
        if entry.get("sidecar") and child.status != NO_RECORD:
            child.status = FOREIGN
            child.reasons.append(
                f"its record {entry['sidecar']} (read when {node.path} was built) is gone"
            )
        # Raw data or source file: the consumer's recorded hash is the only reference there is.
        child.disk_hash = self.hash_like(child.path, recorded)
        if child.disk_hash != recorded:
            if child.status == VERIFIED:
                child.status = MODIFIED
            child.reasons.append(
                f"content {short(child.disk_hash)} differs from {short(recorded)}"
                f" recorded by {node.path}"
            )
            node.stale.append(
                f"{label} changed after this was built (used {short(recorded)},"
                f" now {short(child.disk_hash)})"
            )
            node.origins.append(child.path)

    @staticmethod
    def _compare_machines(node: Node, path: str, child: Node) -> None:
        """Mark an input built on another machine class, or with other numerics (a fact)."""
        mine = (node.record or {}).get("machine")
        theirs = (child.record or {}).get("machine")
        if not mine or not theirs:
            return
        if mine["class"] != theirs["class"]:
            node.other_machines.append(
                f"input {path} was built on {theirs['class']}; this on {mine['class']}"
            )
        ours, its = numerics_summary(mine), numerics_summary(theirs)
        # A job that ran no torch reports no kernels: nothing to compare.
        if ours["kernels"] and its["kernels"] and ours != its:
            node.other_machines.append(f"input {path} was built with numerics {its}; this {ours}")

    def _register_derived(self, consumer: str, record: dict[str, Any]) -> None:
        for entry in record.get("notes", {}).get("derived", []):
            if "path" in entry:
                recipe = json.dumps(entry["recipe"], sort_keys=True)
                self._recipes.setdefault(
                    entry["path"], f"not kept, reproducible from recipe {recipe} ({consumer})"
                )

    def _derived_node(self, consumer: Node, entry: dict[str, Any]) -> Node:
        if "path" in entry:
            return self.visit(entry["path"])
        key = f"{consumer.path}#{entry['id']}"
        recipe = json.dumps(entry["recipe"], sort_keys=True)
        return self.nodes.setdefault(
            key,
            Node(
                key,
                status=MISSING,
                exists=False,
                kind="virtual",
                reproducible=True,
                recipe=f"not kept, reproducible from recipe {recipe}",
            ),
        )

    def _recipe(self, key: str) -> str | None:
        """How to rebuild a missing path that has no record: a consumer's `derived` note."""
        if key not in self._recipes and not self._scanned:
            # Only a path outside the walked lineage gets here; read every record once.
            self._scanned = True
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if not is_sidecar(name):
                        continue
                    artifact = artifact_of(Path(dirpath, name))
                    try:
                        record = load_record(artifact)
                    except ProvenanceError:
                        continue
                    self._register_derived(artifact.relative_to(self.root).as_posix(), record)
        return self._recipes.get(key)

    def artifact_status(self, path: str) -> str:
        """Status of an artifact, or of one file inside an audited folder (a table cell's JSON)."""
        if path in self.nodes:
            return self.nodes[path].status
        for parent in Path(path).parents:
            folder = self.nodes.get(parent.as_posix())
            if folder is None:
                continue
            if Path(path).relative_to(parent).as_posix() in folder.changed_files:
                return MODIFIED
            if folder.status == MODIFIED:
                # Another file of the folder changed; this one only inherits the folder's inputs.
                return STALE if folder.stale else VERIFIED
            return folder.status
        return self.nodes[self.target(path)].status

    def cells(self, key: str) -> dict[str, dict[str, Any]]:
        node = self.nodes[key]
        notes = (node.record or {}).get("notes", {})
        if "cells" not in notes:
            raise AuditError(f"{key}: its record has no 'cells' note")
        config = node.record.get("config", {}) if node.record else {}
        out = {}
        for cell, spec in sorted(notes["cells"].items()):
            artifacts = {path: self.artifact_status(path) for path in spec["artifacts"]}
            values = {}
            for name in spec["config"]:
                try:
                    values[name] = config_lookup(config, name)
                except KeyError:
                    values[name] = "(not in the record's config)"
            worst = min((*artifacts.values(), VERIFIED), key=STATUSES.index)
            out[cell] = {"status": worst, "artifacts": artifacts, "config": values}
        return out

    def ok(self) -> bool:
        return not any(node.problem for node in self.nodes.values())

    def summary(self) -> dict[str, int]:
        counts = Counter(node.status for node in self.nodes.values())
        return {
            **{status: counts[status] for status in STATUSES},
            "reproducible": sum(
                node.status == MISSING and bool(node.reproducible) for node in self.nodes.values()
            ),
            "total": len(self.nodes),
        }
