"""Development sets of the toy world's skill suites: data for choosing ω that no table reports
(Table 3's held-out ω), drawn after the whole world so that every other file keeps its bytes."""

from __future__ import annotations

import random
from collections.abc import Mapping

from mtl.world import SKILL_FAMILIES, SKILLS, WorldSpec, draw_rows, make_entities


def build_dev(spec: WorldSpec, world: Mapping[str, list[dict]]) -> dict[str, list[dict]]:
    """Development sets of the skill suites (`dev_<skill>`), for choosing ω on data no table
    reports: as many rows as the skill's test suite, distinct, never a test prompt.

    They are drawn after the whole `world` (build_world(spec)) from a stream of their own, so
    every other part keeps its bytes. Their prompts avoid the test sets only: where the test set
    and the training data exhaust a family's prompts (coding has 400 programs, safety 48
    requests), a development row repeats a training prompt, as `dev_overlap` counts.
    """
    test = {row["messages"][0]["content"]
            for part, rows in world.items() if part.startswith("eval_") for row in rows}
    # The entities are the first draw of build_world's stream: the same ones.
    ents = make_entities(random.Random(spec.seed), spec.entities)
    rng = random.Random(f"{spec.seed}-dev")
    dev = {}
    for skill, family in SKILL_FAMILIES.items():
        rows = draw_rows(rng, {skill: family}, ents, len(world[f"eval_{skill}"]), f"dev-{skill}",
                     set(test), True)
        for row in rows:
            row["answer"] = row["messages"][1]["content"]
        dev[f"dev_{skill}"] = rows
    return dev


def dev_overlap(world: Mapping[str, list[dict]], dev: Mapping[str, list[dict]]) -> dict[str, int]:
    """How many rows of each development set repeat a prompt of the training data."""
    trained = {row["messages"][0]["content"]
               for part in ("general", *SKILLS) for row in world[part]}
    return {part: sum(row["messages"][0]["content"] in trained for row in rows)
            for part, rows in dev.items()}
