"""The heuristic ω = |D|/|G|: from the data trained, or from the paper's own sizes.

By default ω_k is |D_k|/|G| counted in the subsets actually trained on (mtl.merge computes it).
When the data differ from the paper's (a public stand-in for its non-public safety set, a
different count of G), that ω is another point than the paper's, so `merge.omega_sizes: paper`
replays the paper's ω instead: each dataset's `paper_examples` (the count the paper reports),
times the share of its full dataset that the subset keeps (1 for `all`, 0.2 for 20pct), over G's.
`plan` puts both side by side before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from mtl.merge import heuristic_omega, heuristic_omegas
from mtl.provenance import load_record

# How far our ω may sit from the paper's before a comparison flags the row.
TOLERANCE = 0.02
MODES = ("data", "paper")


def paper_sizes(data: Mapping, skills: Sequence[str]) -> dict | None:
    """{general: N, skills: [N_k]} from each dataset's `paper_examples`; None when any lacks it."""
    entries = [data["general"], *(data["skills"][s] for s in skills)]
    counts = [entry.get("paper_examples") for entry in entries]
    if any(c is None for c in counts):
        return None
    return {"general": counts[0], "skills": counts[1:]}


def omega_params(merge: Mapping, data: Mapping, skills: Sequence[str]) -> dict | None:
    """What a merge needs to size ω: None (the data trained) or the paper's sizes.

    A config asking for the paper's sizes without stating them is an error naming the keys.
    """
    mode = merge.get("omega_sizes", "data")
    if mode not in MODES:
        raise ValueError(f"config merge.omega_sizes: {mode!r}, expected one of {list(MODES)}")
    if mode == "data":
        return None
    sizes = paper_sizes(data, skills)
    if sizes is None:
        missing = [f"data.{'general' if n == 'general' else 'skills.' + n}.paper_examples"
                   for n in ("general", *skills)
                   if (data["general"] if n == "general" else data["skills"][n])
                   .get("paper_examples") is None]
        raise ValueError(f"config merge.omega_sizes: paper needs {', '.join(missing)}")
    return sizes


def subset_share(path: str | Path) -> float:
    """The share of its full dataset that a subset keeps, from the subset's record."""
    notes = load_record(path).get("notes", {})
    if not notes.get("n_source"):
        raise ValueError(f"{path}: its provenance record has no n_source (rule subset)")
    return notes["n_examples"] / notes["n_source"]


def skill_omegas(skill_data: Sequence[str | Path], general_data: str | Path,
                 paper: Mapping | None) -> list[float]:
    """ω_k per skill: |D_k|/|G| of the data trained, or the paper's sizes (`omega_params`)."""
    if paper is None:
        return heuristic_omegas(skill_data, general_data)
    if len(paper["skills"]) != len(skill_data):
        raise ValueError(f"{len(paper['skills'])} paper sizes for {len(skill_data)} skill subsets")
    general = paper["general"] * subset_share(general_data)
    return [heuristic_omega(round(n * subset_share(path)), round(general))
            for n, path in zip(paper["skills"], skill_data, strict=True)]


_SIZE = re.compile(r"^(?:all|(\d+)pct|n(\d+))$")


def expected_rows(entry: Mapping, size: str) -> int | None:
    """The rows a subset is expected to hold, from the dataset's `expect.rows`; None where the
    size depends on the data (pertask<N> below the fetch's per-source cap) or nothing is
    expected."""
    rows = (entry.get("expect") or {}).get("rows")
    cap = entry.get("per_source_cap")
    if size.startswith("pertask") and cap and int(size.removeprefix("pertask")) >= cap:
        size = "all"  # the fetch already kept at most `cap` rows per task
    match = _SIZE.match(size)
    if rows is None or not match:
        return None
    if match.group(1):
        return round(rows * int(match.group(1)) / 100)
    return min(rows, int(match.group(2))) if match.group(2) else rows


def plan(data: Mapping, skills: Sequence[str], merge: Mapping) -> list[str]:
    """One line per skill: the ω this config will use beside the paper's, before any download.

    Ours is estimated from the expected row counts (the merge computes it from the data
    trained); the paper's from `paper_examples`.
    """
    general = data["general"]
    n_general = expected_rows(general, general.get("size", "all"))
    mode = merge.get("omega_sizes", "data")
    lines = []
    for skill in skills:
        entry = data["skills"][skill]
        size = entry["sizes"][0]
        paper = (entry["paper_examples"] / general["paper_examples"]
                 if entry.get("paper_examples") and general.get("paper_examples") else None)
        n_skill = expected_rows(entry, size)
        ours = n_skill / n_general if n_skill is not None and n_general else None
        if mode == "paper" and paper is not None:
            ours_text = f"{paper:.3f} (merge.omega_sizes: paper)"
        elif ours is None:
            ours_text = "counted from the data at run time"
        else:
            ours_text = f"≈ {ours:.3f} ({n_skill:,} / {n_general:,} expected rows)"
        paper_text = "not stated" if paper is None else (
            f"{paper:.3f} ({entry['paper_examples']:,} / {general['paper_examples']:,})")
        flag = ""
        if mode == "data" and ours is not None and paper is not None \
                and abs(ours - paper) > TOLERANCE:
            flag = f"  differs by {abs(ours - paper):.3f} > {TOLERANCE}"
        lines.append(f"ω {skill}-{size}: ours {ours_text}; paper {paper_text}{flag}")
    return lines
