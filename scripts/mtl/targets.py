"""How the workflow names what it builds: a skillset (one or more <skill>-<size>), a trained
model (<regime>-<skillset>) and a merge (merge-<method tag>-<weighting>-<skillset>); the rules'
targets and the report items' inputs are spelled with these."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Pair = tuple[str, str]  # (skill, size)


def skillset_id(pairs: Iterable[Pair]) -> str:
    """[('science', 'all'), ('safety', 'n500')] -> 'science-all+safety-n500'."""
    return "+".join(f"{skill}-{size}" for skill, size in pairs)


def parse_skillset(skillset: str) -> list[Pair]:
    """'science-all+safety-n500' -> [('science', 'all'), ('safety', 'n500')]."""
    return [tuple(part.rsplit("-", 1)) for part in skillset.split("+")]  # type: ignore[misc]


def merge_id(method: str, weighting: str, pairs: Iterable[Pair]) -> str:
    """A merge of `pairs` by the method of tag `method`, at the heuristic ω or over the grid."""
    return f"merge-{method}-{weighting}-{skillset_id(pairs)}"


def trained_ids(regimes: Sequence[str], pairs: Iterable[Pair]) -> list[str]:
    """Each regime's model of each (skill, size) alone, regime by regime."""
    pairs = list(pairs)
    return [f"{regime}-{skill}-{size}" for regime in regimes for skill, size in pairs]
