"""The paper's training regimes on skill data: what each starts from and what it trains on.

The rules (each regime's inputs and the `regime` wildcard), the training program (its data mix)
and the results table (reading a model's regime from its id) all read REGIMES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Regime:
    """A regime: `init` the model it continues (θ_pre or θ_G); `general` the general data it
    trains on beside the skill data: none, the whole general subset (RT), or as many general
    examples as the skill data has, drawn with the training seed (CFT-match)."""

    name: str
    init: Literal["pretrained", "general"]
    general: Literal["none", "all", "match"]


REGIMES: dict[str, Regime] = {
    regime.name: regime
    for regime in (
        Regime("ptm", init="pretrained", general="none"),  # θ_D, merged into θ_G later
        Regime("cft", init="general", general="none"),  # θ_CFT: θ_G continued on D
        Regime("rt", init="pretrained", general="all"),  # θ_RT: retrained on G ∪ D
        Regime("cft-match", init="general", general="match"),  # θ_CFT on D + as much G
    )
}


def regime_of(model_id: str) -> str | None:
    """The regime of a trained model's id (<regime>-<skillset>), or None: the longest name that
    prefixes it, so 'cft-match-science-all' is cft-match, not cft."""
    found = [name for name in REGIMES if model_id.startswith(f"{name}-")]
    return max(found, key=len) if found else None
