"""Recommendation and conversation metrics, as CRSLab defines them and in their standard forms.

Recommendation (CRSLab ``crslab/evaluator/metrics/rec.py``): one row per
(recommender turn, ground-truth item); a turn with several targets yields
several rows. ``HIT@k`` is 1 if the item is in the top k; ``MRR@k`` is
``1/(rank+1)`` and ``NDCG@k`` is ``1/log2(rank+2)`` for a 0-based rank inside
the top k, else 0. Like CRSLab's ``StandardEvaluator.rec_evaluate``, a row
contributes to metrics at ``k`` only when the ranked list has at least ``k``
items (``short_lists="skip"``); ``short_lists="miss"`` counts them instead.

Deduplicated variants drop targets that were already mentioned earlier in the
dialogue: recommending what the user just named inflates every published number.

Conversation: BLEU-n and Distinct-n, each in two definitions that the report
names:

* ``crslab``: BLEU-n is nltk's sentence BLEU with all weight on the n-gram
  precision, averaged over sentences, tokens split on spaces (CRSLab's
  ``BleuMetric``) after tokenising hypotheses and references as CRSLab's
  preprocessing of ReDial, OpenDialKG and INSPIRED does (:func:`crslab_tokens`:
  nltk's word tokenizer; splitting raw text on spaces instead halves BLEU-1);
  Distinct-n is the number of unique word n-grams over the corpus divided by the
  number of sentences (can exceed 1); ``dist{n}_crslab_char`` counts character
  n-grams, which is what CRSLab's released evaluator computes.
* ``standard``: corpus BLEU with uniform weights up to n and a brevity penalty,
  13a tokenisation (the definition of ``evaluate``'s ``bleu`` metric, computed
  here with nltk because ``evaluate.load("bleu")`` fetches its script from the
  hub, which is not reachable offline); Distinct-n is unique n-grams over all
  n-grams.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import defaultdict
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from nltk.tokenize import NLTKWordTokenizer
from nltk.translate.bleu_score import corpus_bleu, sentence_bleu
from nltk.util import ngrams
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from scipy import stats

KS: tuple[int, ...] = (1, 10, 50)
_tok13a = Tokenizer13a()


def hit_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """1.0 if ``target`` is in the top ``k`` of ``ranked``.

    >>> hit_at_k(["a", "b", "c"], "b", 1), hit_at_k(["a", "b", "c"], "b", 2)
    (0.0, 1.0)
    """
    return float(target in ranked[:k])


def mrr_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """Reciprocal rank of ``target`` if it is in the top ``k``, else 0.

    >>> mrr_at_k(["a", "b", "c"], "b", 10)
    0.5
    """
    return 1.0 / (list(ranked).index(target) + 1) if target in ranked[:k] else 0.0


def ndcg_at_k(ranked: Sequence[str], target: str, k: int) -> float:
    """``1/log2(rank+2)`` for a single relevant item in the top ``k``, else 0.

    >>> round(ndcg_at_k(["a", "b", "c"], "c", 10), 4)
    0.5
    """
    return 1.0 / math.log2(list(ranked).index(target) + 2) if target in ranked[:k] else 0.0


def deduplicated(ranked: Sequence[str], targets: Iterable[str], context_items: Iterable[str]) -> tuple[list[str], list[str]]:
    """CRSLab's deduplicated view of a turn: the ranking without the items the dialogue already
    mentioned, and the distinct targets it had not mentioned.

    >>> deduplicated(["Seen", "X", "Y"], ["X", "Seen", "X"], ["Seen"])
    (['X', 'Y'], ['X'])
    """
    seen = set(context_items)
    return [r for r in ranked if r not in seen], [t for t in dict.fromkeys(targets) if t not in seen]


@dataclass
class RecEvaluator:
    """Accumulates recommendation rows and reports their means.

    Args:
        ks: Cut-offs.
        short_lists: ``"skip"`` (CRSLab) or ``"miss"`` for lists shorter than ``k``.
    """

    ks: tuple[int, ...] = KS
    short_lists: Literal["skip", "miss"] = "skip"
    _sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    _counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def rows(self, ranked: Sequence[str], target: str, prefix: str = "") -> dict[str, float]:
        """Metrics of one (ranked list, target) row; keys absent where skipped."""
        out = {}
        for k in self.ks:
            if len(ranked) < k and self.short_lists == "skip":
                continue
            out[f"{prefix}hit@{k}"] = hit_at_k(ranked, target, k)
            out[f"{prefix}mrr@{k}"] = mrr_at_k(ranked, target, k)
            out[f"{prefix}ndcg@{k}"] = ndcg_at_k(ranked, target, k)
        return out

    def add(self, ranked: Sequence[str], targets: Iterable[str], context_items: Iterable[str] = ()) -> list[dict[str, float]]:
        """Add one recommender turn: a row per target, plus deduplicated rows.

        Args:
            ranked: The system's ranked items, best first.
            targets: Ground-truth items of the turn.
            context_items: Items mentioned earlier in the dialogue (for deduplication).

        Returns:
            The rows added (raw rows, then deduplicated rows prefixed ``dedup_``).
        """
        fresh, new_targets = deduplicated(ranked, targets, context_items)
        added = []
        for target in dict.fromkeys(targets):
            added.append(self.rows(ranked, target))
            if target in new_targets:
                added.append(self.rows(fresh, target, prefix="dedup_"))
        for row in added:
            for key, value in row.items():
                self._sums[key] += value
                self._counts[key] += 1
        return added

    def report(self) -> dict[str, float]:
        """Mean of every metric over its rows, plus row counts (``n_rows``, ``n_dedup_rows``)."""
        out = {key: self._sums[key] / self._counts[key] for key in sorted(self._sums)}
        out["n_rows"] = float(max((self._counts[f"hit@{k}"] for k in self.ks), default=0))
        out["n_dedup_rows"] = float(max((self._counts[f"dedup_hit@{k}"] for k in self.ks), default=0))
        return out


# ---- conversation metrics ------------------------------------------------------------------


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORDS = NLTKWordTokenizer()


def crslab_tokens(text: str) -> str:
    """``text`` tokenised as CRSLab's English datasets are (nltk ``word_tokenize``), joined by spaces.

    ``word_tokenize`` first splits sentences with the punkt model, a download; sentences are split on
    end punctuation here instead, then each goes through the same ``NLTKWordTokenizer``.

    >>> crslab_tokens("Have you seen It (2017)? It's great.")
    "Have you seen It ( 2017 ) ? It 's great ."
    """
    return " ".join(tok for sentence in _SENTENCE_END.split(text.strip()) for tok in _WORDS.tokenize(sentence))


def bleu_crslab(hyps: Sequence[str], refs: Sequence[str], n: int) -> float:
    """CRSLab's BLEU-n: mean sentence BLEU with weight only on n-gram precision.

    Tokens are split on single spaces, exactly as CRSLab does; an empty
    hypothesis is skipped, as CRSLab's ``gen_evaluate`` does.

    >>> bleu_crslab(["the cat sat"], ["the cat sat"], 2)
    1.0
    """
    weights = tuple(1.0 if i == n - 1 else 0.0 for i in range(4))
    with warnings.catch_warnings():  # nltk warns about zero counts of orders whose weight is 0
        warnings.simplefilter("ignore", UserWarning)
        scores = [float(sentence_bleu([r.split(" ")], h.split(" "), weights=weights)) for h, r in zip(hyps, refs, strict=True) if h]
    return sum(scores) / len(scores) if scores else 0.0


def bleu_standard(hyps: Sequence[str], refs: Sequence[str], n: int) -> float:
    """Corpus BLEU with uniform weights up to order ``n``, brevity penalty, 13a tokens, no smoothing.

    >>> bleu_standard(["the cat sat on the mat"], ["the cat sat on the mat"], 2)
    1.0
    """
    if not hyps:
        return 0.0
    weights = tuple(1.0 / n for _ in range(n))
    hyp_toks = [_tok13a(h).split() for h in hyps]
    ref_toks = [[_tok13a(r).split()] for r in refs]
    if len(hyp_toks) != len(ref_toks):
        raise ValueError("hyps and refs differ in length")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return float(corpus_bleu(ref_toks, hyp_toks, weights=weights))


def distinct_crslab(hyps: Iterable[str], n: int, unit: Literal["word", "char"] = "word") -> float:
    """CRSLab's Distinct-n: unique n-grams over the corpus divided by the number of (non-empty) sentences.

    CRSLab's ``StandardEvaluator`` passes the raw string to ``nltk.ngrams``, so
    its released code counts *character* n-grams; ``unit="char"`` reproduces
    that, ``unit="word"`` (default) counts word n-grams as its ``DistMetric`` does.

    >>> distinct_crslab(["a b a", "a b"], 1), distinct_crslab(["a b a", "a b"], 2)
    (1.0, 1.0)
    """
    unique: set[tuple[str, ...]] = set()
    count = 0
    for h in hyps:
        if not h:
            continue
        seq = list(h) if unit == "char" else h.split()
        unique.update(ngrams(seq, n))
        count += 1
    return len(unique) / count if count else 0.0


def distinct_standard(hyps: Iterable[str], n: int) -> float:
    """Distinct-n as unique n-grams over all n-grams in the corpus (0..1).

    >>> distinct_standard(["a b a", "a b"], 1)
    0.4
    """
    unique: set[tuple[str, ...]] = set()
    total = 0
    for h in hyps:
        grams = list(ngrams(h.split(), n))
        unique.update(grams)
        total += len(grams)
    return len(unique) / total if total else 0.0


def conversation_metrics(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """BLEU-1/2 and Distinct-1/2 in their definitions, keys named for them (``crslab``: CRSLab tokens,
    :func:`crslab_tokens`; ``standard``: 13a tokens for BLEU, CRSLab tokens for Distinct; ``crslab_char``:
    character n-grams of the raw text)."""
    out = {}
    hyp_toks, ref_toks = [crslab_tokens(h) for h in hyps], [crslab_tokens(r) for r in refs]
    for n in (1, 2):
        out[f"bleu{n}_crslab"] = bleu_crslab(hyp_toks, ref_toks, n)
        out[f"bleu{n}_standard"] = bleu_standard(hyps, refs, n)
        out[f"dist{n}_crslab"] = distinct_crslab(hyp_toks, n)
        out[f"dist{n}_crslab_char"] = distinct_crslab(hyps, n, unit="char")
        out[f"dist{n}_standard"] = distinct_standard(hyp_toks, n)
    return out


TITLE_WITH_YEAR = re.compile(r"([A-Z0-9][^()\n]{0,80}?) \((\d{4})\)")


def invented_titles(text: str, known: Container[str]) -> list[str]:
    """The "Title (Year)" names in ``text`` that end with no known item name.

    ``known`` holds the item names in lower case (built once by the caller: this runs on every
    response). The pattern starts at the first capital of a run, so "You might like It (2017)" is
    checked as its every word-suffix: it is known if any suffix is.

    >>> invented_titles("You might like It (2017). Or Zorblux Nights (2031)?", {"it (2017)"})
    ['Or Zorblux Nights (2031)']
    """
    return [name for name, suffixes in titles_with_year(text) if not any(x in known for x in suffixes)]


def titles_with_year(text: str) -> list[tuple[str, list[str]]]:
    """Each "Title (Year)" run of ``text``, and its word-suffixes in lower case, longest first: the run
    starts at the first capital ("You might like It (2017)"), so the title is one of its suffixes.

    >>> titles_with_year("You might like It (2017).")
    [('You might like It (2017)', ['you might like it (2017)', 'might like it (2017)', 'like it (2017)', 'it (2017)', '(2017)'])]
    """
    out = []
    for title, year in TITLE_WITH_YEAR.findall(text):
        words = f"{title.strip()} ({year})".split()
        out.append((" ".join(words), [" ".join(words[i:]).lower() for i in range(len(words))]))
    return out


@dataclass(frozen=True)
class TTest:
    """Result of a paired two-sided t-test."""

    statistic: float
    pvalue: float
    n: int
    mean_diff: float


def paired_ttest(a: Sequence[float], b: Sequence[float], alternative: Literal["two-sided", "greater", "less"] = "two-sided") -> TTest:
    """Paired t-test of system ``a`` against ``b`` on the same turns (scipy ``ttest_rel``); two-sided
    by default, ``alternative="greater"`` tests whether ``a`` is better.

    Identical samples give ``statistic=0, pvalue=1`` instead of scipy's NaN.

    Raises:
        ValueError: The samples differ in length or have fewer than 2 pairs.
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    if len(a) < 2:
        raise ValueError("a paired t-test needs at least 2 pairs")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean_diff = sum(diffs) / len(diffs)
    if all(d == diffs[0] for d in diffs):
        if diffs[0] == 0:
            return TTest(0.0, 1.0, len(a), 0.0)
        agrees = {"two-sided": True, "greater": diffs[0] > 0, "less": diffs[0] < 0}[alternative]
        return TTest(math.copysign(math.inf, diffs[0]), 0.0 if agrees else 1.0, len(a), mean_diff)
    res = stats.ttest_rel(a, b, alternative=alternative)
    return TTest(float(res.statistic), float(res.pvalue), len(a), mean_diff)


# ---- confidence intervals and paired comparisons ---------------------------------------------------


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a mean (scipy ``bootstrap``).

    >>> lo, hi = bootstrap_ci([0.0, 1.0] * 50)
    >>> 0.38 < lo < 0.5 < hi < 0.62
    True
    """
    import numpy as np

    data = np.asarray(values, dtype=float)
    if len(data) < 2 or np.all(data == data[0]):
        m = float(data.mean()) if len(data) else float("nan")
        return m, m
    res = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=resamples, method="percentile", random_state=seed)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


@dataclass
class PairedComparison:
    """System ``a`` against baseline ``b`` on the same rows: one-sided tests that ``a`` is better."""

    n: int
    mean_diff: float
    diff_ci: tuple[float, float]
    ttest_p: float
    wilcoxon_p: float

    def table_cells(self, adjusted_p: float) -> str:
        """``mean diff [95% CI] | t-test p | adjusted p | Wilcoxon p`` for a Markdown table row."""
        lo, hi = self.diff_ci
        return f"{self.mean_diff:+.4f} [{lo:+.4f}, {hi:+.4f}] | {self.ttest_p:.3g} | {adjusted_p:.3g} | {self.wilcoxon_p:.3g}"


def compare_paired(a: Sequence[float], b: Sequence[float]) -> PairedComparison:
    """Paired t-test and Wilcoxon signed-rank test (one-sided, ``a > b``) and the bootstrap CI of the mean difference.

    >>> c = compare_paired([1.0] * 30 + [0.0] * 70, [0.0] * 100)
    >>> c.n, round(c.mean_diff, 2), c.ttest_p < 0.001, c.wilcoxon_p < 0.001
    (100, 0.3, True, True)
    """
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    t = paired_ttest(a, b, alternative="greater")
    nonzero = [d for d in diffs if d != 0]
    w = float(stats.wilcoxon(nonzero, alternative="greater").pvalue) if nonzero else 1.0
    return PairedComparison(len(diffs), t.mean_diff, bootstrap_ci(diffs), t.pvalue, w)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; scipy has only Benjamini-Hochberg).

    >>> [round(p, 6) for p in holm([0.01, 0.04, 0.03])]
    [0.03, 0.06, 0.06]
    """
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    out = [0.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        out[i] = running
    return out


def group_folds(groups: Sequence[str], k: int) -> list[int]:
    """A cross-validation fold per row, the rows of one group (a dialogue) in the same fold: the groups
    in sorted order take folds round-robin, so the folds do not depend on the order of the rows.
    (scikit-learn's ``GroupKFold`` balances rows instead and refuses fewer groups than folds, which
    small validation splits have.)

    >>> group_folds(["d7", "d9", "d7", "d8"], 2)
    [0, 0, 0, 1]
    """
    fold = {g: n % k for n, g in enumerate(sorted(set(groups)))}
    return [fold[g] for g in groups]
