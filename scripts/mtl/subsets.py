"""Seeded data subsets named by size: all, 20pct, n500, pertask100."""

from __future__ import annotations

import random
import re

# A subset's size, by kind: every row, N percent, N rows, or at most N rows per task. The rules'
# `size` wildcard and the config's sizes (checked when the workflow is parsed) follow it.
SIZES = {"all": "all", "pct": "[0-9]+pct", "n": "n[0-9]+", "pertask": "pertask[0-9]+"}
SIZE_PATTERN = "|".join(SIZES.values())


def parse_size(size: str) -> tuple[str, int | None]:
    """'all' -> ('all', None), '20pct' -> ('pct', 20), 'n500' -> ('n', 500),
    'pertask100' -> ('pertask', 100)."""
    for kind, pattern in SIZES.items():
        if re.fullmatch(pattern, size):
            digits = re.sub("[^0-9]", "", size)
            return kind, int(digits) if digits else None
    raise ValueError(f"size {size!r}: expected all, <N>pct, n<N> or pertask<N>")


def select(rows: list[dict], size: str, seed: int, task_key: str = "family",
           origin: str = "the data") -> list[dict]:
    """Choose rows for `size`; the chosen rows keep their original order (stable files).

    Subsets of one dataset are nested: 20pct is a prefix of 40pct under the same seed, as in
    the paper's data-size sweeps. `pertask<N>` needs a task (`task_key`) on every row: data
    without one would be drawn as one task, N rows in all, so it is refused naming `origin`.
    """
    kind, count = parse_size(size)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if count is None:
        chosen = order
    elif kind == "pct":
        chosen = order[: round(len(rows) * count / 100)]
    elif kind == "n":
        if count > len(rows):
            raise ValueError(f"size {size}: only {len(rows)} rows available")
        chosen = order[:count]
    else:
        untasked = next((i for i, row in enumerate(rows) if not row.get(task_key)), None)
        if untasked is not None:
            raise ValueError(
                f"size {size} draws {count} rows per task, but {origin} has no task"
                f" field {task_key!r} (row {untasked + 1} first): use all, <N>pct or n<N>"
            )
        seen: dict[str, int] = {}
        chosen = []
        for index in order:
            task = rows[index].get(task_key, "")
            if seen.get(task, 0) < count:
                seen[task] = seen.get(task, 0) + 1
                chosen.append(index)
    return [rows[i] for i in sorted(chosen)]
