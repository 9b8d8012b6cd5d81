"""Each claim rule on synthetic all_results frames: a world where it holds, one where it fails,
and the spread (sd over seeds, or a one-seed number's stderr) counted against the claim."""

from __future__ import annotations

import pytest
from results_frame import SEEDS, frame, general, merge, trained

from mtl.claims import claims

SKILLS = ("science", "safety", "coding")
THREE = "+".join(SKILLS)
BASE = {"general": 70.0, "science": 10.0, "safety": 0.0, "coding": 5.0, "exref": 100.0}
# Per skill, each kind of point's scores (the skill's own suite under "skill"); every seeded
# point gets offsets −1, 0, +1 over the three seeds, so its sd over seeds is 1.
KINDS = {
    "cft": {"general": 35.0, "skill": 90.0, "exref": 20.0},
    "rt": {"general": 72.0, "skill": 92.0, "exref": 40.0},
    "grid 0.5": {"general": 68.0, "skill": 80.0, "exref": 97.0},
    "grid 1.0": {"general": 60.0, "skill": 85.0, "exref": 95.0},
    "heuristic": {"general": 70.0, "skill": 60.0, "exref": 98.0},
}
# The merge of all three skills at the heuristic ω: science drops 30, safety 5, coding 10.
ALL = {"general": 69.0, "science": 30.0, "safety": 55.0, "coding": 50.0, "exref": 96.0}
STEPS = {"cft": 60, "rt": 400, "grid 0.5": 60, "grid 1.0": 60, "heuristic": 60}
OMEGA = {"science": "0.22", "safety": "0.24", "coding": "0.57"}


def world(change: dict | None = None, steps: dict | None = None, seeds=SEEDS, extra=()):
    """The default world, with change[(kind, skill)] = {suite or "skill": value} applied and
    the `extra` points added."""
    change, steps = change or {}, {**STEPS, **(steps or {})}
    offsets = (-1.0, 0.0, 1.0) if len(seeds) == 3 else (0.0,) * len(seeds)
    points = [general(BASE)]
    for skill in SKILLS:
        for kind, scores in KINDS.items():
            scores = {**scores, **change.get((kind, skill), {})}
            full = {**BASE, "general": scores["general"], skill: scores["skill"],
                    "exref": scores["exref"]}
            for seed, offset in zip(seeds, offsets, strict=True):
                values = {suite: v + offset for suite, v in full.items()}
                if kind in ("cft", "rt"):
                    points.append(trained(kind, skill, "all", seed, values, steps=steps[kind]))
                elif kind == "heuristic":
                    points.append(merge("ta", "heuristic", skill, "all", OMEGA[skill], seed,
                                        values, steps=steps[kind]))
                else:
                    points.append(merge("ta", "grid", skill, "all", kind.split()[1], seed,
                                        values, steps=steps[kind]))
    merged = {**ALL, **change.get(("all", THREE), {})}
    for seed, offset in zip(seeds, offsets, strict=True):
        points.append(merge("ta", "heuristic", THREE, "all+all+all", "0.22+0.24+0.57", seed,
                            {suite: v + offset for suite, v in merged.items()}, steps=180))
    return frame(*points, *extra)


def verdicts(table, claim: int, part: str) -> dict[str, str]:
    rows = table[(table["claim"] == claim) & (table["part"] == part)]
    assert not rows.empty, (claim, part)
    return dict(zip(rows["scope"], rows["verdict"], strict=True))


def test_every_claim_holds_in_the_default_world():
    table = claims(world())
    assert list(table["claim"]) == sorted(table["claim"])
    assert set(table["claim"]) == {1, 2, 3, 4, 5}
    assert (table["verdict"] == "holds").all(), table[table["verdict"] != "holds"].to_string()
    scored = table[table["part"] != "cost"]  # steps have no spread
    assert scored["numbers"].str.contains("±").all()
    assert table["numbers"].str.len().min() > 10 and table["rule"].str.len().min() > 20


def test_claim1_fails_when_cft_keeps_general_within_the_spread():
    # PTM's General at its best ω is 60 ± 1; CFT 58 ± 1: a difference of 2 is not beyond 1 + 1.
    table = claims(world({("cft", "coding"): {"general": 58.0}}))
    assert verdicts(table, 1, "general retention") == {"science": "holds", "safety": "holds",
                                                       "coding": "fails"}
    row = table[(table["claim"] == 1) & (table["scope"] == "coding")].iloc[0]
    assert row["margin"] == pytest.approx(0.0)
    assert "PTM best ω 60.00 ± 1.00 (sd over 3 seeds)" in row["numbers"]


def test_claim2_gain_fails_short_of_rt_and_when_rt_gains_nothing_clear():
    short = claims(world({("grid 1.0", "science"): {"skill": 50.0},
                          ("grid 0.5", "science"): {"skill": 45.0}}))
    assert verdicts(short, 2, "skill gain")["science"] == "fails"
    # PTM gains 62 of RT's 82: past 0.75 × 82 = 61.5 on the mean, short of it less one sd.
    edge = claims(world({("grid 1.0", "science"): {"skill": 72.0},
                         ("grid 0.5", "science"): {"skill": 70.0}}))
    assert verdicts(edge, 2, "skill gain")["science"] == "fails"
    row = edge[(edge["claim"] == 2) & (edge["part"] == "skill gain")].iloc[0]
    assert row["margin"] == pytest.approx(-0.5)
    # RT's gain over θ_G (10 ± 1 stderr) is 1.5 < its spread 1 + 1: nothing to be close to.
    flat = claims(world({("rt", "safety"): {"skill": 1.5}}))
    assert verdicts(flat, 2, "skill gain") == {"science": "holds", "safety": "fails",
                                               "coding": "holds"}


def test_claim2_cost_fails_when_ptm_trains_more_than_half_of_rt():
    table = claims(world(steps={"rt": 100}))
    assert set(verdicts(table, 2, "cost").values()) == {"fails"}
    assert set(verdicts(claims(world(steps={"rt": 120})), 2, "cost").values()) == {"holds"}


def test_claim3_each_part_fails_on_its_own():
    table = claims(world({("cft", "safety"): {"exref": 99.0}}))
    assert verdicts(table, 3, "CFT over-refuses") == {"safety": "fails"}
    assert verdicts(table, 3, "RT over-refuses") == {"safety": "holds"}
    table = claims(world({("rt", "safety"): {"exref": 98.5}}))  # 1.5 < 1 + 1
    assert verdicts(table, 3, "RT over-refuses") == {"safety": "fails"}
    # PTM at its best ω drops ExRef by 9 points: with spreads 1 + 1 that is past 10.
    table = claims(world({("grid 1.0", "safety"): {"exref": 91.0}}))
    assert verdicts(table, 3, "PTM keeps compliance") == {"safety": "fails"}
    assert verdicts(claims(world({("grid 1.0", "safety"): {"exref": 92.0}})), 3,
                    "PTM keeps compliance") == {"safety": "holds"}


def test_claim4_fails_when_the_heuristic_omega_gains_little():
    table = claims(world({("heuristic", "coding"): {"skill": 30.0}}))
    # Best ω gains 80; the heuristic 25 − 1 < 0.5 × 80.
    assert verdicts(table, 4, "heuristic ω") == {"science": "holds", "safety": "holds",
                                                 "coding": "fails"}


def _dev(skill: str, by_omega: dict[str, float]) -> list[list[dict]]:
    """The skill's grid on its development set (metric "dev/score"), the same for every seed."""
    points = []
    for omega, value in by_omega.items():
        for seed in SEEDS:
            rows = merge("ta", "grid", skill, "all", omega, seed, {skill: value})
            points.append([{**row, "metric": "dev/" + row["metric"]} for row in rows])
    return points


def test_claim4_against_the_held_out_omega_is_decided_only_with_development_sets():
    assert (claims(world())["part"] == "against held-out ω").sum() == 0
    # Coding's development set picks ω 0.5 (test gain 75 over θ_G): the heuristic's gain of 55
    # minus its sd of 1 reaches half of it. With a heuristic gaining only 30, it does not.
    held = [*_dev("coding", {"0.5": 70.0, "1.0": 40.0})]
    table = claims(world(extra=held))
    rows = table[table["part"] == "against held-out ω"]
    assert list(rows["scope"]) == ["coding"]
    assert "PTM held-out ω 80.00" in rows["numbers"].iloc[0]
    assert verdicts(table, 4, "against held-out ω") == {"coding": "holds"}
    weak = claims(world({("heuristic", "coding"): {"skill": 35.0}}, extra=held))
    assert verdicts(weak, 4, "against held-out ω") == {"coding": "fails"}


def test_claim5_interference_and_science_dropping_most():
    no_drop = {("all", THREE): {"science": 60.0, "safety": 60.0, "coding": 60.0}}
    table = claims(world(no_drop))
    assert verdicts(table, 5, "interference") == {"all skills": "fails"}
    coding_most = {("all", THREE): {"science": 55.0, "coding": 40.0}}
    table = claims(world(coding_most))
    assert verdicts(table, 5, "interference") == {"all skills": "holds"}
    assert verdicts(table, 5, "science drops most") == {"all skills": "fails"}
    assert "against coding" in table[table["part"] == "science drops most"].iloc[0]["rule"]


def test_heuristic_and_alone_points_are_on_the_data_of_the_compared_merges():
    """A smaller science subset's heuristic merge (ω = |D|/|G| of its own D) scoring higher
    must not stand in for the full-data heuristic merge: claim 4 compares the heuristic on the
    best PTM's data, claim 5 the same task vector alone and in the merge of all skills."""
    small = [merge("ta", "heuristic", "science", "20pct", "0.044", seed,
                   {**BASE, "science": 95.0}, steps=12) for seed in SEEDS]
    table = claims(world(extra=small))
    rows = table[(table["claim"] == 4) & (table["scope"] == "science")]
    assert "PTM heuristic ω 60.00" in rows.iloc[0]["numbers"]
    interference = table[table["part"] == "interference"].iloc[0]["numbers"]
    assert "science alone 60.00" in interference and "95.00" not in interference


def test_one_seed_uses_the_evaluation_stderr_as_spread():
    table = claims(world(seeds=(1234,)))
    row = table[(table["claim"] == 1) & (table["scope"] == "science")].iloc[0]
    assert "(1 seed, eval stderr)" in row["numbers"]
    # Both stderrs are 1: 60 − 35 − 2.
    assert row["margin"] == pytest.approx(23.0)


def test_a_missing_procedure_is_named():
    table = world()
    with pytest.raises(ValueError, match=r"regime 'rt', skills 'coding'"):
        claims(table[table["model"] != "rt-coding-all"])
