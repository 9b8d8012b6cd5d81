"""Paper-scale datasets from the hub, normalized to chat rows ({"id", "source", "messages"})."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping


def to_chat(row: Mapping, index: int, spec: Mapping, origin: str) -> dict:
    """One chat row from a hub row: its own `messages`, or prompt/response columns."""
    if spec.get("prompt_field"):
        missing = [f for f in (spec["prompt_field"], spec["response_field"]) if f not in row]
        if missing:
            raise ValueError(f"{origin}: row {index + 1} is missing field(s) {missing}")
        messages = [
            {"role": "user", "content": row[spec["prompt_field"]]},
            {"role": "assistant", "content": row[spec["response_field"]]},
        ]
    elif "messages" in row:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
    else:
        raise ValueError(f"{origin}: row {index + 1} has no 'messages' and the config names no "
                         "prompt_field/response_field")
    source = str(row.get("dataset") or row.get("source") or row.get("_task") or "")
    return {"id": str(row.get("id", index)), "source": source, "family": source,
            "messages": messages}


def keep(source: str, spec: Mapping) -> bool:
    """Source filters match by prefix (Tülu names science subsets 'science.*')."""
    if spec.get("include_sources") and not source.startswith(tuple(spec["include_sources"])):
        return False
    return not (spec.get("exclude_sources") and source.startswith(tuple(spec["exclude_sources"])))


def normalize(rows: Iterable[Mapping], spec: Mapping, origin: str) -> list[dict]:
    """Filter by source, cap per source (seeded), and convert to chat rows."""
    chats = [to_chat(row, i, spec, origin) for i, row in enumerate(rows)]
    chats = [row for row in chats if keep(row["source"], spec)]
    cap = spec.get("per_source_cap")
    if cap:
        by_source: dict[str, list[dict]] = {}
        for row in chats:
            by_source.setdefault(row["source"], []).append(row)
        rng = random.Random(spec.get("seed", 0))
        chosen = {id(r) for group in by_source.values()
                  for r in (rng.sample(group, cap) if len(group) > cap else group)}
        chats = [row for row in chats if id(row) in chosen]
    return chats
