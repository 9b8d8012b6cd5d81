"""Paper-scale datasets from the hub, normalized to chat rows ({"id", "source", "messages"})."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping


def to_chat(row: Mapping, index: int, spec: Mapping, origin: str) -> dict:
    """One chat row from a hub row: its own `messages`, or prompt/response columns.

    A row without the fields the config says it has is an error naming the dataset, the row
    (1-based, in the file's order) and the field; so is a message without role or content.
    Roles and answers are checked with every other source's rows, by the subset step
    (mtl.chat.check_rows).
    """
    where = f"{origin}: row {index + 1}"
    if spec.get("prompt_field"):
        missing = [f for f in (spec["prompt_field"], spec["response_field"])
                   if row.get(f) in (None, "")]
        if missing:
            raise ValueError(f"{where} is missing field(s) {missing}")
        messages = [
            {"role": "user", "content": row[spec["prompt_field"]]},
            {"role": "assistant", "content": row[spec["response_field"]]},
        ]
    elif row.get("messages"):
        messages = []
        for turn, message in enumerate(row["messages"]):
            if not isinstance(message, Mapping) or "role" not in message \
                    or "content" not in message:
                raise ValueError(f"{where}: message {turn + 1} needs 'role' and 'content'")
            messages.append({"role": message["role"], "content": message["content"]})
    else:
        raise ValueError(f"{where} has no 'messages' and the config names no "
                         "prompt_field/response_field")
    field = spec.get("source_field")
    if field and field not in row:
        raise ValueError(f"{where} is missing field {field!r} (data source_field)")
    source = str(row[field] if field else
                 row.get("dataset") or row.get("source") or row.get("_task") or "")
    if spec.get("source_delimiter"):
        # SciRIFF's `_instance_id` is "{task}:{split}:{index}": the task is the source.
        source = source.split(spec["source_delimiter"], 1)[0]
    return {"id": str(row.get("id", index)), "source": source, "family": source,
            "messages": messages}


def keep(source: str, spec: Mapping) -> bool:
    """Source filters match by prefix (Tülu names science subsets 'science.*')."""
    if spec.get("include_sources") and not source.startswith(tuple(spec["include_sources"])):
        return False
    return not (spec.get("exclude_sources") and source.startswith(tuple(spec["exclude_sources"])))


def normalize(rows: Iterable[Mapping], spec: Mapping, origin: str) -> list[dict]:
    """Filter by source, cap per source, and convert to chat rows.

    The cap keeps each source's first rows in file order (`per_source_order: file`, what
    SciRIFF's own mixture script does) or a seeded sample (`seeded`, the default).
    """
    chats = [to_chat(row, i, spec, origin) for i, row in enumerate(rows)]
    chats = [row for row in chats if keep(row["source"], spec)]
    cap = spec.get("per_source_cap")
    if cap:
        by_source: dict[str, list[dict]] = {}
        for row in chats:
            by_source.setdefault(row["source"], []).append(row)
        order = spec.get("per_source_order", "seeded")
        if order not in ("seeded", "file"):
            raise ValueError(f"{origin}: per_source_order {order!r}: expected seeded or file")
        rng = random.Random(spec.get("seed", 0))
        chosen = {id(r) for group in by_source.values()
                  for r in (group[:cap] if order == "file" else
                            rng.sample(group, cap) if len(group) > cap else group)}
        chats = [row for row in chats if id(row) in chosen]
    return chats


def check_expected(count: int, expect: Mapping | None, where: str) -> None:
    """Stop when the rows left after the filters are not the rows the config expects.

    `expect` is {rows: N, tolerance: t} (t a fraction of N; 0 = exactly N). A hub dataset that
    changed under the same id, or a filter that no longer matches, is found here, before
    anything trains on it.
    """
    if not expect:
        return
    rows, tolerance = expect["rows"], expect.get("tolerance", 0.0)
    if abs(count - rows) > tolerance * rows:
        raise ValueError(
            f"{where}: {count} rows after the filters, but the config expects {rows} "
            f"(± {tolerance:.1%}, {abs(count - rows)} off): the data or its filters changed"
        )
