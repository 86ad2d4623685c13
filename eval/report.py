"""Tables and figures from per-turn results: the paper's recommendation, conversation and
ablation tables as Markdown and CSV (best in bold), ablation bar charts as PNG, HIT@10/50 with 95%
bootstrap intervals, and one-sided paired t and Wilcoxon tests of each LLMCRS system against the best
baseline on the same (turn, target) rows (Holm over the systems' t-tests)."""

from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.metrics import (
    KS,
    RecEvaluator,
    bleu_crslab,
    bootstrap_ci,
    compare_paired,
    conversation_metrics,
    crslab_tokens,
    deduplicated,
    hit_at_k,
    holm,
    invented_titles,
)
from sim.systems import GRAPH_SYSTEMS

REC_COLS = [f"{m}@{k}" for m in ("hit", "mrr", "ndcg") for k in KS] + ["dedup_hit@10", "dedup_hit@50", "named_top1", "named_top10"]
CONV_COLS = [
    *(f"{m}{n}_{d}" for d in ("crslab", "standard") for m in ("bleu", "dist") for n in (1, 2)),
    "dist1_crslab_char", "dist2_crslab_char", "response_fallback_share", "invented_title_share",
    "unsupported_claim_share", "item_fact_share", "field_dump_share",
]  # fmt: skip
STAGES = ("detection", "matching", "execution", "response")
LOWER_IS_BETTER = (
    "named_top1",
    "named_top10",
    "fallback_share",
    "invented_title_share",
    "unsupported_claim_share",
    "field_dump_share",
)  # column endings whose best value is the least


def load_results(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Every ``*.jsonl`` of a results folder, by system name."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if rows:
            out[rows[0]["system"]] = rows
    return out


def is_baseline(system: str) -> bool:
    """Experts alone and the LLM alone are the baselines."""
    return system.startswith("expert:") or system.startswith("llm_only")


def is_graph(system: str) -> bool:
    """An LLMCRS system (any ablation, any model label)."""
    return system.split("@")[0] in GRAPH_SYSTEMS


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (the nearest rank after rounding; NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def system_metrics(rows: list[dict[str, Any]], known: frozenset[str] | None = None) -> dict[str, float]:
    """All metrics of one system's rows (short ranked lists count as misses beyond their length);
    with the dataset's item names ``known``, the share of responses naming a "Title (Year)" that is
    none of them (:func:`crsdata.metrics.invented_titles`)."""
    ev = RecEvaluator(short_lists="miss")
    for r in rows:
        ev.add(r["ranked"], r["targets"], r["context_items"])
    out = ev.report()
    out.update(conversation_metrics([r["response"] for r in rows], [r["reference"] for r in rows]))
    out["turns"] = float(len(rows))
    out["named_top1"], out["named_top10"] = map(float, named_recommendations([r for r in rows if r["ranked"]]))
    if known is not None:
        out["invented_title_share"] = sum(bool(invented_titles(r["response"] or "", known)) for r in rows) / max(1, len(rows))
    out.update(grounding_metrics(rows))
    out["fallback_share"] = sum(any(r["fallbacks"].values()) for r in rows) / max(1, len(rows))
    for stage in STAGES:
        secs = [r["seconds"][stage] for r in rows if stage in r["seconds"]]
        out[f"{stage}_median_s"] = statistics.median(secs) if secs else float("nan")
        out[f"{stage}_p95_s"] = percentile(secs, 0.95)
        flags = [r["fallbacks"][stage] for r in rows if stage in r["fallbacks"]]
        out[f"{stage}_fallback_share"] = sum(flags) / len(flags) if flags else float("nan")
    walls = [r["wall"] for r in rows]
    out["turn_median_s"] = statistics.median(walls) if walls else float("nan")
    out["turn_p95_s"] = percentile(walls, 0.95)
    out["turns_per_s"] = len(walls) / sum(walls) if walls and sum(walls) else float("nan")
    subtasks = [r["subtask"] for r in rows]
    out["recommend_share"] = subtasks.count("recommendation") / max(1, len(rows))
    return out


def grounding_metrics(rows: list[dict[str, Any]]) -> dict[str, float]:
    """The grounding check's counts (:mod:`agent.grounding`) over the rows that carry one (a generated
    reply): replies claiming what the summary does not support, recommendation replies naming the item
    and a true fact of it (or the turn's reason), and replies printing "attribute: value" fields.
    NaN where no row carries a check (an expert alone, a recommendation-only run).

    >>> g = {"claims": [], "names_item": True, "true_attribute": True, "field_dump": False}
    >>> rows = [{"subtask": "recommendation", "grounding": g}, {"subtask": "recommendation", "grounding": {**g, "claims": ["On Hulu!"]}}]
    >>> grounding_metrics(rows)["unsupported_claim_share"], grounding_metrics(rows)["item_fact_share"]
    (0.5, 1.0)
    """
    checked = [r for r in rows if r.get("grounding")]
    recs = [r for r in checked if r["subtask"] == "recommendation"]
    nan = float("nan")
    return {
        "unsupported_claim_share": sum(bool(r["grounding"]["claims"]) for r in checked) / len(checked) if checked else nan,
        "item_fact_share": sum(bool(r["grounding"]["names_item"] and r["grounding"]["true_attribute"]) for r in recs) / len(recs)
        if recs
        else nan,
        "field_dump_share": sum(bool(r["grounding"]["field_dump"]) for r in checked) / len(checked) if checked else nan,
    }


def named_recommendations(rows: list[dict[str, Any]]) -> tuple[int, int]:
    """``(turns whose top item, turns whose top ten, is a film the dialogue named)``, under any of its
    catalog entries: titles compared without their year, so "Titanic" counts for "Titanic (1997)" (a
    remake of a named title counts too: the count errs high).

    >>> rows = [{"ranked": ["Titanic", "Heat (1995)"], "context_items": ["Titanic (1997)"]}, {"ranked": ["Up (2009)"], "context_items": []}]
    >>> named_recommendations(rows)
    (1, 1)
    """
    from crsdata.catalog import split_title
    from tools.linking import norm

    def film(name: str) -> str:
        return norm(split_title(name)[0])

    top1 = top10 = 0
    for r in rows:
        named = {film(i) for i in r.get("context_items") or []}
        ranked = [film(i) for i in r["ranked"][:10]]
        top1 += bool(ranked and ranked[0] in named)
        top10 += any(f in named for f in ranked)
    return top1, top10


def dataset_item_names(dataset: str, root: str | None = None) -> frozenset[str] | None:
    """The item names of ``dataset`` from the data root in lower case, or ``None`` (no invented-title share) without its data."""
    from crsdata.loaders import item_names
    from crsdata.paths import DataError, data_root

    try:
        return frozenset(name.lower() for name in item_names(dataset, str(data_root(root))))
    except DataError:
        return None


def hit_rows(rows: list[dict[str, Any]], k: int, dedup: bool = False) -> dict[tuple[str, str], float]:
    """Per (turn, target) HIT@k, the unit of the paired t-test. ``dedup``: the ``dedup_`` rows of
    :meth:`crsdata.metrics.RecEvaluator.add` (a target the dialogue already mentioned is left out, and the
    mentioned items leave the ranking: :func:`crsdata.metrics.deduplicated`), which compare a system that
    never re-offers a named item fairly.

    >>> rows = [{"sample_id": "a", "ranked": ["Seen", "X"], "targets": ["X", "Seen"], "context_items": ["Seen"]}]
    >>> hit_rows(rows, 1), hit_rows(rows, 1, dedup=True)
    ({('a', 'X'): 0.0, ('a', 'Seen'): 1.0}, {('a', 'X'): 1.0})
    """
    out = {}
    for r in rows:
        ranked, targets = deduplicated(r["ranked"], r["targets"], (r.get("context_items") or []) if dedup else [])
        for t in targets:
            out[(r["sample_id"], t)] = hit_at_k(ranked, t, k)
    return out


@dataclass
class Report:
    """Computed metrics and tests for a results folder."""

    metrics: dict[str, dict[str, float]]
    pvalues: dict[str, float]
    baseline: str | None
    n_turns: int
    cis: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    tests: dict[str, str] = field(default_factory=dict)


def build_report(folder: Path, data_root: str | None = None) -> Report:
    """Metrics of every system on the turns all of them finished, and t-tests vs the best baseline."""
    results = load_results(folder)
    if not results:
        raise FileNotFoundError(f"no results in {folder}; run `python -m eval run` first")
    common = set.intersection(*({r["sample_id"] for r in rows} for rows in results.values()))
    results = {s: [r for r in rows if r["sample_id"] in common] for s, rows in results.items()}
    known = None if folder.name.endswith("_rec") else dataset_item_names(folder.parent.name, data_root)
    metrics = {s: system_metrics(rows, known) for s, rows in results.items()}
    baselines = [s for s in metrics if is_baseline(s)]
    baseline = max(baselines, key=lambda s: metrics[s].get("hit@10", 0.0)) if baselines else None
    cis = {
        s: {f"{d}hit@{k}": bootstrap_ci(list(hit_rows(rows, k, bool(d)).values())) for k in (10, 50) for d in ("", "dedup_")}
        for s, rows in results.items()
    }
    if not folder.name.endswith("_rec"):  # sentence-level BLEU (CRSLab's) averages over turns: its interval is a bootstrap too
        for s, rows in results.items():
            for n in (1, 2):
                scores = [bleu_crslab([crslab_tokens(r["response"])], [crslab_tokens(r["reference"])], n) for r in rows if r["response"]]
                if scores:
                    cis[s][f"bleu{n}_crslab"] = bootstrap_ci(scores)
    pvalues: dict[str, float] = {}
    tests: dict[str, str] = {}
    if baseline:
        for dedup in (False, True):
            base = hit_rows(results[baseline], 10, dedup)
            keys = sorted(base)
            compared = {}
            for s in metrics:
                if is_graph(s) and len(keys) >= 2:
                    mine = hit_rows(results[s], 10, dedup)
                    compared[s] = compare_paired([mine[k] for k in keys], [base[k] for k in keys])
            for (s, c), adjusted in zip(compared.items(), holm([c.ttest_p for c in compared.values()]), strict=True):
                line = f"t {c.ttest_p:.2g} (Holm {adjusted:.2g}), Wilcoxon {c.wilcoxon_p:.2g}, n={c.n}"
                if dedup:
                    tests[s] += f"; dedup_hit@10: {line}"
                else:
                    pvalues[s], tests[s] = c.ttest_p, line
    return Report(metrics, pvalues, baseline, len(common), cis, tests)


def _markdown(
    title: str,
    rows: list[str],
    cols: list[str],
    metrics: dict[str, dict[str, float]],
    extra: dict[str, str] | None = None,
    bold: bool = True,
    cis: dict[str, dict[str, tuple[float, float]]] | None = None,
) -> str:
    best = {}
    for c in cols:
        vals = [metrics[r].get(c, float("nan")) for r in rows]
        vals = [v for v in vals if v == v]
        best[c] = (min(vals) if c.endswith(LOWER_IS_BETTER) else max(vals)) if vals and bold else None
    head = ["system", *cols, *(["one-sided paired tests, HIT@10 (and dedup_hit@10) > best baseline"] if extra is not None else [])]
    lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = []
        for c in cols:
            v = metrics[r].get(c, float("nan"))
            cell = "n/a" if v != v else (f"{int(v)}" if c == "n_rows" else f"{v:.4f}")
            cell = f"**{cell}**" if v == best[c] and len(rows) > 1 and c != "n_rows" else cell
            if cis and c in cis.get(r, {}):
                low, high = cis[r][c]
                cell += f" [{low:.3f}, {high:.3f}]"
            cells.append(cell)
        if extra is not None:
            cells.append(extra.get(r, ""))
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _csv(path: Path, rows: list[str], cols: list[str], metrics: dict[str, dict[str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["system", *cols])
        for r in rows:
            w.writerow([r, *(metrics[r].get(c, "") for c in cols)])


def _bar_chart(path: Path, rows: list[str], cols: list[str], metrics: dict[str, dict[str, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(rows), 3.6))
    width = 0.8 / max(1, len(cols))
    for i, c in enumerate(cols):
        ax.bar([x + i * width for x in range(len(rows))], [metrics[r].get(c, 0.0) for r in rows], width, label=c)
    ax.set_xticks([x + width * (len(cols) - 1) / 2 for x in range(len(rows))], rows, rotation=20, ha="right")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(folder: Path, data_root: str | None = None) -> Path:
    """Write ``tables.md``, ``recommendation.csv``, ``conversation.csv``, ``operations.csv`` and
    ``figures/*.png`` into ``folder``; return the Markdown file."""
    rep = build_report(folder, data_root)
    systems = sorted(rep.metrics, key=lambda s: (not is_graph(s), s))
    graphs = [s for s in systems if is_graph(s)]
    ops_cols = ["turns", "fallback_share", "recommend_share", "turn_median_s", "turn_p95_s", "turns_per_s"] + [
        f"{st}_{m}" for st in STAGES for m in ("median_s", "p95_s", "fallback_share")
    ]
    pcol = dict(rep.tests)
    if rep.baseline:
        pcol[rep.baseline] = "(best baseline)"
    md = [f"# Results: {folder}", "", f"{rep.n_turns} recommender turns evaluated by every system.",
          "Recommendation metrics follow CRSLab (one row per target); a ranked list shorter than k counts as a miss beyond its length; "
          "`dedup_` drops targets already mentioned in the dialogue. BLEU/Distinct are given in CRSLab's definition (`_crslab`: sentence BLEU "
          "with only the n-gram weight, on CRSLab's nltk tokens of hypothesis and reference; unique word n-grams per sentence; `_crslab_char`: character n-grams, "
          "as CRSLab's released evaluator counts them) and the standard one (`_standard`: corpus BLEU up to n on 13a tokens; unique over total n-grams). "
          "`response_fallback_share`: responses that are the template, not the LLM's; `invented_title_share`: responses naming a \"Title (Year)\" that is no item of the dataset; the grounding check of every generated reply (agent/grounding.py): `unsupported_claim_share` (a streaming service, award, price, \"find it here\", a year or title the summary does not give), `item_fact_share` (recommendation replies naming the item and a true catalog fact or the reason), `field_dump_share` (\"year: 1998\" fields). HIT@k cells carry 95% bootstrap intervals; `n_rows` is the (turn, target) rows.", ""]  # fmt: skip
    md.append(_markdown("Recommendation (Table 4)", systems, ["n_rows", *REC_COLS], rep.metrics, extra=pcol, cis=rep.cis))
    if not folder.name.endswith("_rec"):  # a recommendation-only run has template texts: no conversation table
        md.append(_markdown("Conversation (Table 5)", systems, CONV_COLS, rep.metrics, cis=rep.cis))
    if len(graphs) > 1:
        md.append(
            _markdown(
                "Ablations (Tables 6-8)",
                graphs,
                [
                    "hit@10",
                    "hit@50",
                    "dedup_hit@10",
                    *(() if folder.name.endswith("_rec") else ("bleu1_crslab", "dist2_crslab")),
                    "fallback_share",
                ],
                rep.metrics,
            )
        )
    md.append(_markdown("Operations: fallbacks and latency (seconds)", systems, ops_cols, rep.metrics, bold=False))
    _csv(folder / "recommendation.csv", systems, REC_COLS, rep.metrics)
    _csv(folder / "conversation.csv", systems, CONV_COLS, rep.metrics)
    _csv(folder / "operations.csv", systems, ops_cols, rep.metrics)
    figs = folder / "figures"
    figs.mkdir(exist_ok=True)
    if graphs:
        _bar_chart(
            figs / "ablation_recommendation.png", graphs, ["hit@10", "hit@50", "dedup_hit@10"], rep.metrics, "Ablations: recommendation"
        )
        _bar_chart(
            figs / "ablation_conversation.png",
            graphs,
            ["bleu1_crslab", "bleu2_crslab", "dist1_standard", "dist2_standard"],
            rep.metrics,
            "Ablations: conversation",
        )
    _bar_chart(figs / "systems_recommendation.png", systems, ["hit@10", "hit@50"], rep.metrics, "All systems: HIT@k")
    out = folder / "tables.md"
    out.write_text("\n".join(md), encoding="utf-8")
    return out
