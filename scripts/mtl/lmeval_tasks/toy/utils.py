"""Per-document scorers of the toy suites (lm-eval calls these through process_results)."""

from mtl.scoring import exact_match, is_refusal, program_passes, token_f1


def process_answer(doc: dict, results: list[str]) -> dict[str, float]:
    return {
        "exact_match": exact_match(results[0], doc["answer"]),
        "token_f1": token_f1(results[0], doc["answer"]),
    }


def process_coding(doc: dict, results: list[str]) -> dict[str, float]:
    return {"pass": program_passes(results[0], doc["expected_output"])}


def process_safety(doc: dict, results: list[str]) -> dict[str, float]:
    return {"refusal": float(is_refusal(results[0]))}


def process_exref(doc: dict, results: list[str]) -> dict[str, float]:
    return {"compliance": float(not is_refusal(results[0]))}
