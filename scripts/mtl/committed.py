"""`mtl-audit --compare REV`: targets rebuilt here against their records committed at git
revision REV, identical or the first input down the lineage whose hash differs
(docs/reproducibility.md)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from mtl.lineage import BUILD_COMMAND, AuditError, Auditor, algorithm_like, short
from mtl.machine import machine_line
from mtl.provenance import sidecar


def committed_record(root: Path, rev: str, key: str) -> dict[str, Any] | None:
    """The record of `key` as committed at git revision `rev`; None if it was not committed."""
    try:
        done = subprocess.run(
            ["git", "show", f"{rev}:./{sidecar(key).as_posix()}"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as err:
        raise AuditError(f"--compare needs git: {err}") from None
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except ValueError as err:
        raise AuditError(f"{sidecar(key)} at {rev} is not JSON: {err}") from None


def same_content(auditor: Auditor, key: str, committed: str, rebuilt: str | None) -> bool:
    """Whether a committed and a rebuilt hash of `key` name the same bytes. Records committed
    before BLAKE3 say sha256: then the rebuilt artifact on disk is hashed by sha256 too."""
    if rebuilt is None or committed == rebuilt:
        return committed == rebuilt
    if algorithm_like(committed) == algorithm_like(rebuilt) or not (auditor.root / key).exists():
        return False
    return auditor.hash_like(key, committed) == committed


def compare(auditor: Auditor, rev: str, key: str) -> tuple[bool, list[str]]:
    """Compare `key` as rebuilt here with its record committed at `rev` (docs/reproducibility.md).

    Identical, or the first difference: down the lineage, the deepest input whose hash differs
    between the committed and the rebuilt records, as far as committed records reach.
    """
    then = committed_record(auditor.root, rev, key)
    if then is None:
        raise AuditError(f"{key}: no record {sidecar(key)} committed at {rev}")
    node = auditor.nodes.get(key) or auditor.visit(key)
    now = node.record
    if now is None or not node.exists:
        return False, [f"{key}: not rebuilt here yet (build it with `{BUILD_COMMAND} {key}`)"]
    if same_content(auditor, key, then["hash"], now["hash"]):
        return True, [f"{key}: identical to the record committed at {rev} ({short(now['hash'])})"]
    lines = [
        f"{key}: DIFFERS from the record committed at {rev}"
        f" (committed {short(then['hash'])}, rebuilt {short(now['hash'])})"
    ]
    path, first_then, first_now = key, then, now
    while True:
        rebuilt_inputs = {e["path"]: e["hash"] for es in first_now["inputs"].values() for e in es}
        differing = [
            (entry["path"], entry["hash"], rebuilt_inputs.get(entry["path"]))
            for entries in first_then["inputs"].values()
            for entry in entries
            if not same_content(
                auditor, entry["path"], entry["hash"], rebuilt_inputs.get(entry["path"])
            )
        ]
        if not differing:
            lines.append(f"  first difference: {path} itself (its inputs are identical)")
            break
        deeper = None
        for child, _, _ in sorted(differing):
            child_then = committed_record(auditor.root, rev, child)
            child_now = auditor.nodes[child].record if child in auditor.nodes else None
            if child_then is not None and child_now is not None:
                deeper = (child, child_then, child_now)
                break
        if deeper is None:
            lines.append(f"  first difference: {len(differing)} input(s) of {path}:")
            lines.extend(
                f"    {child}: committed {short(old)}, rebuilt {short(new)}"
                for child, old, new in sorted(differing)
            )
            lines.append(f"  (no committed records below {path}: the lineage ends there)")
            break
        path, first_then, first_now = deeper
    lines.append(f"  committed build: {machine_line(then)}")
    lines.append(f"  rebuilt here:    {machine_line(now)}")
    return False, lines
