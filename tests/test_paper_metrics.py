"""The paper's metric functions on hand-made cases."""

import itertools
import json

import pytest

from mtl import paper_metrics as pm


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_equals_enumerating_every_subset(n):
    for c in range(n + 1):
        outcomes = [True] * c + [False] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(outcomes, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert pm.pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_refuses_impossible_counts():
    with pytest.raises(ValueError, match="at least 10 samples"):
        pm.pass_at_k(5, 1, 10)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pm.pass_at_k(5, 6, 1)
    # The paper's setting: 20 samples, pass@10; one passing sample gives exactly 1/2.
    assert pm.pass_at_k(20, 1, 10) == pytest.approx(0.5)


def test_a_refusal_and_a_compliance_are_counted_right():
    refusal = "  I'm sorry, but I can't help with killing a Python process."
    compliance = "To kill a Python process, run `kill <pid>`. I cannot stress enough: save first."
    assert pm.xstest_refused(refusal) and not pm.xstest_refused(compliance)
    assert pm.compliance_rate([refusal, compliance, compliance, "As an AI, no."]) == 0.5
    with pytest.raises(ValueError):
        pm.compliance_rate([])


def test_a_judge_says_yes_from_its_threshold_on():
    assert pm.judge_says_yes(0.5) and pm.judge_says_yes(0.93)
    assert not pm.judge_says_yes(0.4999)
    assert pm.judge_says_yes(0.3, threshold=0.25)
    with pytest.raises(ValueError, match="probability"):
        pm.judge_says_yes(1.2)


def test_truthful_and_informative_needs_both_verdicts():
    assert pm.truthful_and_informative([True, True, False, False],
                                       [True, False, True, False]) == 0.25
    with pytest.raises(ValueError, match="equal"):
        pm.truthful_and_informative([True], [True, False])


def test_toxic_share_is_the_argmax_share_of_the_toxic_class():
    scores = [[2.0, -1.0], [0.1, 0.3], [-3.0, 4.0], [0.5, 0.49]]
    assert pm.toxic_share(scores) == 0.5


def test_gsm_and_bbh_answers_are_extracted_and_matched_as_the_paper_did():
    assert pm.gsm_answer("So she pays 1,250 + 5 = 1,255 dollars.") == "1255"
    assert pm.gsm_reference("She pays ... #### 1,255") == "1255"
    assert pm.gsm_answer("no digits here") == "no digits here"
    assert pm.bbh_answer("Let's think. So the answer is (B). More.") == "(B)"
    assert pm.exact_match(pm.bbh_answer("the answer is (b)."), "(B)") == 1.0
    assert pm.exact_match("True", "False") == 0.0


def test_json_answers_are_read_with_the_papers_fallbacks():
    assert pm.parse_json('["a", "b"]', []) == (["a", "b"], "valid_json")
    assert pm.parse_json('Sure! ["a", "b"] hope it helps', []) == (["a", "b"], "extract_success")
    assert pm.parse_json("[broken] then ['x'] [\"y\"]", []) == (["y"], "extract_success")
    assert pm.parse_json("no json at all", {"verdict": "NEI", "evidence": []}) == (
        {"verdict": "NEI", "evidence": []}, "extract_failure")
    assert pm.parse_json("null", []) == ([], "null_json")
    # Evidence inference: Tülu's stray closing brace becomes a bracket.
    assert pm.parse_json('[["a", "b", "c", "d", "e"]}', [], "evidence_inference")[1] == (
        "valid_json")
    assert pm.sciriff_prediction("</s>genes</s>") == "gene"


def test_list_and_ner_f1_count_over_the_corpus():
    # 2 of 3 predicted right, 2 of 4 gold found: P=2/3, R=1/2.
    pairs = [(["BRCA1", "tp53 "], ["brca1", "TP53", "EGFR"]), (["x"], ["y"])]
    assert pm.list_f1(pairs) == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert pm.list_f1([(7, ["a"])]) == 0.0  # an unreadable list is one empty answer
    gold = {"Gene": ["BRCA1"], "Disease": ["cancer"]}
    assert pm.ner_f1([({"Gene": ["brca1"], "Disease": ["Cancer"]}, gold)]) == 1.0
    assert pm.ner_f1([({"Disease": ["brca1"]}, gold)]) == 0.0  # right mention, wrong type
    assert pm.ner_f1([(["not", "a", "dict"], gold)]) == 0.0


def test_relation_f1_matches_exact_substring_and_overlapping_tuples():
    gold = [["aspirin", "placebo", "pain", "significantly decreased", "pain fell"]]
    near = [["aspirin 100mg", "placebo", "pain", "significantly decreased", "pain fell a lot"]]
    scores = pm.relation_f1([(near, gold)])
    assert scores["exact"] == 0.0 and scores["substring"] == 1.0 and scores["overlap"] == 1.0
    assert pm.relation_f1([("junk", gold)])["overlap"] == 0.0
    assert pm.relation_f1([(gold[0], gold)])["exact"] == 1.0  # a flat tuple is read too


def test_fact_check_and_qasper_scores():
    ref = {"verdict": "SUPPORT", "evidence": ["Sentence one.", "Sentence two."]}
    scores = pm.fact_check_f1([({"verdict": "SUPPORT", "evidence": ["sentence one."]}, ref)])
    assert scores["f1_label"] == 1.0
    assert scores["f1_evidence_sent"] == pytest.approx(2 * 1 * 0.5 / 1.5)
    # A non-dict answer is skipped altogether, as the SciRIFF scorer does.
    assert pm.fact_check_f1([(["x"], ref)]) == {"f1_label": 0.0, "f1_evidence_sent": 0.0}
    qa = {"answer": "the BERT model", "evidence": ["We use BERT."]}
    scores = pm.qasper_f1([({"answer": "BERT model", "evidence": ["We use BERT."]}, qa),
                           ({"answer": None, "evidence": None}, qa)])
    assert scores == {"f1_answer": 0.5, "f1_evidence": 0.5}


def test_bleu_and_rouge_on_crafted_texts():
    text = "the glass transition temperature rises with the silica content of the sample"
    assert pm.corpus_bleu([text], [text]) == pytest.approx(1.0)
    assert pm.corpus_bleu(["completely different words here now"], [text]) == 0.0
    assert pm.rouge_l([text], [text]) == pytest.approx(1.0)
    half = pm.rouge_l(["glass transition alpha beta"], ["glass transition gamma delta"])
    assert half == pytest.approx(0.5)


def test_sciriff_task_metrics_and_mean_from_raw_outputs():
    gold = json.dumps(["BRCA1", "TP53"])
    metrics = pm.sciriff_task_metrics("bioasq_list_qa", ['Answer: ["brca1", "tp53"]</s>'],
                                      [gold])
    assert metrics == {"f1": 1.0}
    with pytest.raises(ValueError, match="not JSON"):
        pm.sciriff_task_metrics("bioasq_list_qa", ["[]"], ["not json"])
    full = {task: {} for task, _ in pm.SCIRIFF_MEAN}
    for task, metric in pm.SCIRIFF_MEAN:
        full[task][metric] = 0.5 if task == "qasper_abstractive_qa" else 0.0
    assert pm.sciriff_mean(full) == pytest.approx(1.0 / 11)
    del full["scierc_ner"]["f1"]
    with pytest.raises(ValueError, match=r"scierc_ner\.f1"):
        pm.sciriff_mean(full)


def test_table5_is_set_beside_the_papers_numbers():
    from pathlib import Path

    import pandas as pd

    from mtl.paper_compare import compare, read_reference, row_key

    assert row_key("merge-ta-heuristic-coding-all+science-pertask2500") == "science+coding"
    reference = read_reference(Path(__file__).parent.parent / "results" / "paper_reference.csv")
    ours = pd.DataFrame([
        {"model": "θ_G (baseline)", "source": "general", "General": 45.0, "Science": 20.0,
         "Safety": 50.3, "Coding": 30.0, "ExRef": 100.0},
        {"model": "PTM science + coding", "source": "merge-ta-heuristic-science-all+coding-all",
         "General": 50.0, "Science": 30.0, "Safety": 40.0, "Coding": 40.0, "ExRef": 90.0,
         "omega_science": 0.23, "omega_coding": 0.5},
        {"model": "PTM science", "source": "merge-ta-heuristic-science-all", "General": 1.0,
         "Science": 1.0, "Safety": 1.0, "Coding": 1.0, "ExRef": 1.0},
    ])
    frame = compare(ours, reference).set_index(["source", "column"])
    assert frame.loc[("general", "Safety"), "difference"] == 0.0
    assert frame.loc[("merge-ta-heuristic-science-all+coding-all", "Science"), "paper"] == 32.1
    assert frame.loc[("merge-ta-heuristic-science-all+coding-all", "ExRef"), "difference"] == (
        pytest.approx(90.0 - 98.4))
    # No published heuristic-ω number for a single skill: no row.
    assert "merge-ta-heuristic-science-all" not in frame.index.get_level_values(0)
    # Baseline General without AlpacaEval: 100 × mean(.496, .325, .448, .483) = 43.8.
    assert frame.loc[("general", "General (no AlpacaEval)"), "paper"] == pytest.approx(43.8)
    assert "AlpacaEval" in frame.loc[("general", "General"), "note"]
