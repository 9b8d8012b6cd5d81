"""The one registry of evaluation suites and which of them are skills.

config/schema.yaml's `evaluation.suites` enum (held equal by tests/test_merge_recipes.py),
evaluation (each toy suite's headline metric), the rules, the world and the tables (the skills'
order, their columns) all read it. It imports nothing heavy, so the tables and the Snakefile can.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    """An evaluation suite: its column in the tables, its toy task's headline metric, and
    whether it measures a skill (a suite named after a skill dataset, as in Table 3)."""

    name: str
    column: str
    toy_metric: str
    skill: bool


SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite("general", "General", "exact_match", skill=False),
        Suite("science", "Science", "exact_match", skill=True),
        Suite("safety", "Safety", "refusal", skill=True),
        Suite("coding", "Coding", "pass", skill=True),
        Suite("exref", "ExRef", "compliance", skill=False),
    )
}
# The skills in the paper's order (science, safety, coding): merges, ω columns and table rows
# are named and ordered by it.
SKILLS: tuple[str, ...] = tuple(name for name, suite in SUITES.items() if suite.skill)


def skill_rank(skill: str) -> tuple[int, str]:
    """Sort key: the paper's skills in the paper's order, then any other skill by name."""
    return (SKILLS.index(skill) if skill in SKILLS else len(SKILLS), skill)
