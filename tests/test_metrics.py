"""Every metric against values computed by hand."""

from __future__ import annotations

import math

import pytest

from crsdata.metrics import (
    RecEvaluator,
    bleu_crslab,
    bleu_standard,
    conversation_metrics,
    distinct_crslab,
    distinct_standard,
    hit_at_k,
    mrr_at_k,
    ndcg_at_k,
    paired_ttest,
)


def test_rank_metrics_by_hand():
    ranked = ["a", "b", "c", "d"]
    assert hit_at_k(ranked, "c", 2) == 0.0 and hit_at_k(ranked, "c", 3) == 1.0
    assert mrr_at_k(ranked, "c", 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, "c", 10) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(ranked, "a", 1) == 1.0
    # k larger than the list, empty list, absent target
    assert hit_at_k(ranked, "d", 50) == 1.0
    assert hit_at_k([], "a", 10) == mrr_at_k([], "a", 10) == ndcg_at_k([], "a", 10) == 0.0
    assert mrr_at_k(ranked, "z", 50) == 0.0


def test_evaluator_one_row_per_target_and_crslab_skip():
    ev = RecEvaluator(ks=(1, 2))
    ev.add(["x", "y"], ["y", "z"])  # two targets -> two rows
    ev.add(["x"], ["x"])  # list shorter than 2: skipped at k=2 (CRSLab)
    rep = ev.report()
    assert rep["hit@1"] == pytest.approx((0 + 0 + 1) / 3)
    assert rep["hit@2"] == pytest.approx((1 + 0) / 2)
    assert rep["mrr@2"] == pytest.approx((0.5 + 0) / 2)
    assert rep["n_rows"] == 3

    miss = RecEvaluator(ks=(1, 2), short_lists="miss")
    miss.add(["x"], ["x"])
    assert miss.report()["hit@2"] == 1.0


def test_evaluator_no_target_adds_nothing():
    ev = RecEvaluator()
    assert ev.add(["a"] * 50, []) == []
    assert ev.report()["n_rows"] == 0


def test_dedup_drops_mentioned_targets_and_items():
    ev = RecEvaluator(ks=(1,))
    ev.add(["seen", "new"], ["seen", "new"], context_items=["seen"])
    rep = ev.report()
    assert rep["hit@1"] == 0.5  # raw: "seen" hit at 1, "new" missed
    assert rep["dedup_hit@1"] == 1.0  # "seen" dropped as target and from the list -> "new" is first
    assert rep["n_dedup_rows"] == 1


def test_bleu_crslab_by_hand():
    # hyp "the cat is here" vs ref "the cat sat here": unigram precision 3/4, bigram 1/3; same length -> BP 1
    assert bleu_crslab(["the cat is here"], ["the cat sat here"], 1) == pytest.approx(0.75)
    assert bleu_crslab(["the cat is here"], ["the cat sat here"], 2) == pytest.approx(1 / 3)
    # mean over sentences; empty hypotheses are skipped as CRSLab does
    assert bleu_crslab(["a b", "", "x y"], ["a b", "c", "q r"], 1) == pytest.approx(0.5)
    # brevity penalty: hyp of 2 vs ref of 4 -> exp(1 - 4/2)
    assert bleu_crslab(["the cat"], ["the cat sat here"], 1) == pytest.approx(math.exp(-1))


def test_bleu_standard_by_hand():
    hyps, refs = ["the cat is here", "a dog"], ["the cat sat here", "a dog runs"]
    # corpus: unigram matches 3+2 over 6; bigram matches 1+1 over 3+1; c=6, r=7 -> BP exp(1-7/6)
    p1, p2, bp = 5 / 6, 2 / 4, math.exp(1 - 7 / 6)
    assert bleu_standard(hyps, refs, 1) == pytest.approx(bp * p1)
    assert bleu_standard(hyps, refs, 2) == pytest.approx(bp * math.sqrt(p1 * p2))
    assert bleu_standard([], [], 2) == 0.0


def test_distinct_by_hand():
    hyps = ["i like it", "i like that", ""]
    # unigrams: i like it that -> 4 unique over 2 sentences (empty one not counted)
    assert distinct_crslab(hyps, 1) == 2.0
    assert distinct_crslab(hyps, 2) == pytest.approx(3 / 2)  # (i like)(like it)(like that)
    assert distinct_standard(hyps, 1) == pytest.approx(4 / 6)
    assert distinct_standard(hyps, 2) == pytest.approx(3 / 4)
    assert distinct_crslab(["ab", "ba"], 1, unit="char") == 1.0  # chars a,b over 2 sentences
    assert distinct_crslab([], 1) == distinct_standard([], 1) == 0.0


def test_conversation_metrics_names_definitions():
    m = conversation_metrics(["a b c"], ["a b c"])
    assert set(m) == {f"{k}{n}_{d}" for k in ("bleu", "dist") for n in (1, 2) for d in ("crslab", "standard")} | {
        "dist1_crslab_char",
        "dist2_crslab_char",
    }
    assert m["bleu2_standard"] == 1.0 and m["dist1_crslab"] == 3.0


def test_paired_ttest():
    a, b = [0.9, 0.8, 0.7, 0.95], [0.5, 0.6, 0.4, 0.55]
    res = paired_ttest(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(d) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 3)
    assert res.statistic == pytest.approx(mean / (sd / 2))
    assert 0 < res.pvalue < 0.01
    assert paired_ttest([1, 2], [1, 2]).pvalue == 1.0
    # one-sided: half the two-sided p in the direction of the difference, 1 - p/2 against it
    assert paired_ttest(a, b, alternative="greater").pvalue == pytest.approx(res.pvalue / 2)
    assert paired_ttest(b, a, alternative="greater").pvalue == pytest.approx(1 - res.pvalue / 2)
    assert paired_ttest([1, 1], [0, 0], alternative="greater").pvalue == 0.0
    assert paired_ttest([0, 0], [1, 1], alternative="greater").pvalue == 1.0
    with pytest.raises(ValueError, match="differ in length"):
        paired_ttest([1, 2], [1])
    with pytest.raises(ValueError, match="at least 2"):
        paired_ttest([1], [1])


def test_conversation_metrics_match_a_hand_computation():
    from crsdata.metrics import bleu_crslab, conversation_metrics, crslab_tokens

    # CRSLab tokens: hyp [I, like, It, (, 2017, ), .] vs ref [I, like, it, .]: 3 of 7 unigrams match, no brevity penalty
    assert crslab_tokens("I like It (2017).") == "I like It ( 2017 ) ."
    m = conversation_metrics(["I like It (2017)."], ["I like it."])
    assert m["bleu1_crslab"] == pytest.approx(3 / 7)
    assert bleu_crslab(["I like It (2017)."], ["I like it."], 1) == pytest.approx(2 / 4)  # raw split: the number CRSLab would not report
    # Distinct, both ways, on ["a b a", "a b"]: words {a, b} over 2 sentences; characters {a, " ", b} and bigrams {"a ", " b", "b ", " a"}
    m = conversation_metrics(["a b a", "a b"], ["x", "y"])
    assert m["dist1_crslab"] == pytest.approx(1.0) and m["dist2_crslab"] == pytest.approx(1.0)
    assert m["dist1_crslab_char"] == pytest.approx(1.5) and m["dist2_crslab_char"] == pytest.approx(2.0)
    assert m["dist1_standard"] == pytest.approx(2 / 5)
