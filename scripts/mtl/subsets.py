"""Seeded data subsets named by size: all, 20pct, n500, pertask100."""

from __future__ import annotations

import random
import re

_SIZE = re.compile(r"^(all|(\d+)pct|n(\d+)|pertask(\d+))$")


def select(rows: list[dict], size: str, seed: int, task_key: str = "family",
           origin: str = "the data") -> list[dict]:
    """Choose rows for `size`; the chosen rows keep their original order (stable files).

    Subsets of one dataset are nested: 20pct is a prefix of 40pct under the same seed, as in
    the paper's data-size sweeps. `pertask<N>` needs a task (`task_key`) on every row: data
    without one would be drawn as one task, N rows in all, so it is refused naming `origin`.
    """
    match = _SIZE.match(size)
    if not match:
        raise ValueError(f"size {size!r}: expected all, <N>pct, n<N> or pertask<N>")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    if size == "all":
        chosen = order
    elif match.group(2):
        chosen = order[: round(len(rows) * int(match.group(2)) / 100)]
    elif match.group(3):
        count = int(match.group(3))
        if count > len(rows):
            raise ValueError(f"size {size}: only {len(rows)} rows available")
        chosen = order[:count]
    else:
        untasked = next((i for i, row in enumerate(rows) if not row.get(task_key)), None)
        if untasked is not None:
            raise ValueError(
                f"size {size} draws {match.group(4)} rows per task, but {origin} has no task"
                f" field {task_key!r} (row {untasked + 1} first): use all, <N>pct or n<N>"
            )
        cap, seen = int(match.group(4)), {}
        chosen = []
        for index in order:
            task = rows[index].get(task_key, "")
            if seen.get(task, 0) < cap:
                seen[task] = seen.get(task, 0) + 1
                chosen.append(index)
    return [rows[i] for i in sorted(chosen)]
