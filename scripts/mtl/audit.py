"""Audit where artifacts came from: walk their provenance records back to the raw data.

    python -m mtl.audit results/table5.csv [more targets] [--json] [--cells] [--root DIR]

Every artifact on the way is re-hashed (once per run) and reported as
- verified:  its content matches its record and everything it was built from is unchanged;
- modified:  its content differs from its own record (or, for raw data without a record, from
             the hash its consumer recorded);
- stale:     it was built from something that has changed since: an input that was rebuilt,
             edited, or is itself stale (the input is named);
- missing:   it is not on disk, either reproducible (its record or a consumer's recipe says how
             to rebuild it, e.g. a merged model that was evaluated without being kept) or not;
- not-built: a workflow artifact (its consumer read its record) that is neither on disk nor
             recorded here: not built on this machine yet, as on a fresh clone, whose committed
             tables name evaluations it has not run. Not a problem; the report says how to
             build it;
- foreign:   it exists where one is expected, but has no provenance record: this workflow
             did not write it (made by hand, or its record was removed), so a run stops at it
             instead of taking it as built or deleting it;
- no-record: it exists but its provenance record cannot be read.

Each artifact built on another machine class than its consumer (CPU model and instruction
sets, GPUs) or with other numerics (kernel level, threads) is marked, as a fact, not a problem.

With --compare REV, rebuilt targets are compared with the records committed at git revision
REV: identical, or the first input down the lineage whose hash differs, with the machine facts
of both builds (docs/reproducibility.md, "The audit").

Exit status: 0 when nothing is modified, stale, without record or irrecoverably missing (and,
with --compare, every target is identical); 1 otherwise; 2 for a usage error (such as --cells on
a target whose record has no cells note).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl.committed import compare
from mtl.lineage import (
    BUILD_COMMAND,
    FOREIGN,
    MISSING,
    MODIFIED,
    NO_RECORD,
    NOT_BUILT,
    STALE,
    VERIFIED,
    AuditError,
    Auditor,
)


def summary_line(auditor: Auditor, targets: Sequence[str] = ()) -> str:
    """The counts by status and the verdict; what is not built yet, with the command that builds
    it."""
    s = auditor.summary()
    verdict = "OK" if auditor.ok() else "PROBLEMS FOUND"
    line = (
        f"summary: {s['total']} artifacts: {s[VERIFIED]} verified, {s[MODIFIED]} modified,"
        f" {s[STALE]} stale, {s[MISSING]} missing ({s['reproducible']} reproducible),"
        f" {s[FOREIGN]} foreign, {s[NO_RECORD]} no-record"
    )
    if s[NOT_BUILT]:
        line += (
            f", {s[NOT_BUILT]} not built on this machine yet (build them with"
            f" `{BUILD_COMMAND} {' '.join(targets)}`, then audit again)"
        )
    return f"{line}: {verdict}"


def render_tree(auditor: Auditor, keys: Sequence[str]) -> list[str]:
    """Indented lineage trees; a subtree already printed is shown once, then "(see above)"."""
    lines: list[str] = []
    shown: set[str] = set()

    def walk(key: str, depth: int, edge: str) -> None:
        node = auditor.nodes[key]
        pad = "  " * depth
        name = f"{node.path}/" if node.kind == "dir" else node.path
        head = f"{pad}{edge}{name}: {node.label()}"
        if key in shown:
            lines.append(f"{head} (see above)")
            return
        shown.add(key)
        if node.record:
            rule = [f"rule {node.record.get('rule')}"]
            rule += [f"{k}={v}" for k, v in sorted(node.record.get("wildcards", {}).items())]
            head += f"  [{' '.join(rule)}]"
        elif node.exists and node.status not in (NO_RECORD, FOREIGN):
            head += "  [raw input]"
        lines.append(head)
        lines.extend(f"{pad}    ! {reason}" for reason in node.reasons + node.stale)
        if node.recipe:
            lines.append(f"{pad}    = {node.recipe}")
        if node.code_changed:
            changed = ", ".join(node.code_changed)
            lines.append(f"{pad}    ~ code changed since it was built: {changed}")
        lines.extend(f"{pad}    ~ {fact}" for fact in node.other_machines)
        for input_edge in node.inputs:
            walk(input_edge.path, depth + 1, f"{input_edge.name}: ")
        for derived in node.derived:
            walk(derived, depth + 1, "derived: ")

    for key in keys:
        walk(key, 0, "")
    return lines


def render_cells(key: str, cells: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"cells of {key}:"]
    for cell, info in cells.items():
        status = info["status"]
        lines.append(f"  {cell}: {status if status == VERIFIED else status.upper()}")
        lines.extend(f"      {path}: {state}" for path, state in info["artifacts"].items())
        lines.extend(
            f"      config {name} = {json.dumps(value, sort_keys=True)}"
            for name, value in info["config"].items()
        )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mtl-audit",
        description="Walk artifacts' provenance records back to the raw data and re-check hashes.",
    )
    parser.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help="artifact path (or its .prov.json), relative to --root",
    )
    parser.add_argument("--json", action="store_true", help="print the audit as JSON")
    parser.add_argument(
        "--cells",
        action="store_true",
        help="for a table: what each cell depends on (artifacts and config keys)",
    )
    parser.add_argument(
        "--compare",
        metavar="REV",
        help="compare the targets with their records committed at git revision REV (e.g. HEAD)",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=Path("."),
        help="the workflow's working directory, which record paths are relative to (default: .)",
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        parser.error(f"--root {args.root} is not a folder")

    auditor = Auditor(args.root)
    keys = [auditor.target(target) for target in args.targets]
    compared: list[str] = []
    same = True
    try:
        cells = {key: auditor.cells(key) for key in keys} if args.cells else {}
        for key in keys if args.compare else []:
            identical, lines = compare(auditor, args.compare, key)
            same &= identical
            compared += lines
    except AuditError as err:
        print(f"mtl-audit: {err}", file=sys.stderr)
        return 2
    ok = auditor.ok() and same

    if args.json:
        report: dict[str, Any] = {
            "ok": ok,
            "targets": keys,
            "summary": auditor.summary(),
            "nodes": {key: node.to_json() for key, node in auditor.nodes.items()},
        }
        if args.cells:
            report["cells"] = cells
        if args.compare:
            report["compare"] = {"rev": args.compare, "identical": same, "lines": compared}
        print(json.dumps(report, indent=2, sort_keys=True, default=str))
    else:
        lines = render_tree(auditor, keys)
        for key, table in cells.items():
            lines += ["", *render_cells(key, table)]
        if compared:
            lines += ["", *compared]
        print("\n".join([*lines, "", summary_line(auditor, keys)]))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
