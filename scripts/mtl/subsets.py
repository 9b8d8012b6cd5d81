"""Seeded data subsets named by size: all, 20pct, n500, pertask100."""

from __future__ import annotations

import random
import re

_SIZE = re.compile(r"^(all|(\d+)pct|n(\d+)|pertask(\d+))$")


def select(rows: list[dict], size: str, seed: int, task_key: str = "family") -> list[dict]:
    """Choose rows for `size`; the chosen rows keep their original order (stable files).

    Subsets of one dataset are nested: 20pct is a prefix of 40pct under the same seed, as in
    the paper's data-size sweeps.
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
        cap, seen = int(match.group(4)), {}
        chosen = []
        for index in order:
            task = rows[index].get(task_key, "")
            if seen.get(task, 0) < cap:
                seen[task] = seen.get(task, 0) + 1
                chosen.append(index)
    return [rows[i] for i in sorted(chosen)]
