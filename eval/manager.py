"""``python -m eval manager --dataset redial``: the manager on the full test split, against its baselines.

Reads the cached decision data and features (``python -m rl.decisions``), so every system is scored
on every recommender turn of the test split in seconds, without running an expert or the LLM again:

* **Detection** (all recommender turns, labels from :func:`agent.heuristics.label_turn`): majority
  class, the fallback rule, TF-IDF + logistic regression over the last four utterances (a non-LLM
  learned detector trained on the same training turns), the trained manager after SFT and after RLPF.
  Accuracy with a 95% bootstrap CI, paired one-sided tests of the manager against each baseline
  (t-test and Wilcoxon, Holm-corrected), confusion matrices.
* **Recommendation** (the evaluation samples, CRSLab's per-target rows): each offered expert alone,
  w/o M (always recommend with the default expert), the rule manager, every expert blended with equal
  weights (no manager), the trained manager after SFT (w/o RL) and after RLPF (full: its matching
  distribution blends the experts, :func:`agent.manager.blend_weights`), full with one matched expert
  per turn (the paper's matching, no blend), the per-turn oracle over the experts (an upper bound), and
  a router cross-fitted on the test split itself (:func:`cv_router`, what picking one expert could
  learn at best) and the best expert blended with the one other expert and weight that do best on the
  test split itself (:func:`blend_bound`, what blending could reach at best). HIT@10 and HIT@50 with
  CIs; the full manager against the best single expert, w/o M, w/o RL and no blend; the two bounds
  against the best single expert.

Writes ``<results-dir>/manager/<dataset>/{tables.md,detection.csv,recommendation.csv}``.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agent.manager import SUBTASK_NAMES, ManagerError, head_slug, load_manager, manager_dir, train_command
from crsdata.metrics import bootstrap_ci, compare_paired, holm
from crsdata.publish import PUBLISH_HELP, command_line, publish
from rl.decisions import load_features, load_split, model_name, recommenders_of
from rl.manager import REC, Decisions, DecisionTensors, decision_tensors, fixed, greedy, target_hits
from tools.dialogue import format_dialogue
from tools.subtasks import RECOMMENDATION


@dataclass
class ManagerEvalArguments:
    """``python -m eval manager``."""

    dataset: str = "redial"
    split: str = "test"
    manager: str | None = None  # folder of a trained manager (default: the one the graph uses for --model)
    model: str = field(default="embedded", metadata={"help": "the local model whose head and cached features are evaluated"})
    results_dir: str = "results"
    publish: bool = field(default=True, metadata={"help": PUBLISH_HELP})


def tfidf_detector(train_rows: list[dict[str, Any]], test_rows: list[dict[str, Any]]) -> list[str]:
    """TF-IDF (word 1-2 grams) + logistic regression over the last four utterances: a non-LLM learned detector."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def text(r: dict[str, Any]) -> str:
        return format_dialogue([(a, b) for a, b in r["context"][-4:]])

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    x = vec.fit_transform([text(r) for r in train_rows])
    clf = LogisticRegression(max_iter=2000, C=4.0).fit(x, [r["label"] for r in train_rows])
    return [str(p) for p in clf.predict(vec.transform([text(r) for r in test_rows]))]


def confusion(labels: list[str], preds: list[str]) -> list[list[int]]:
    """Rows: corpus label; columns: prediction (order of :data:`SUBTASK_NAMES`)."""
    m = [[0] * len(SUBTASK_NAMES) for _ in SUBTASK_NAMES]
    for a, b in zip(labels, preds, strict=True):
        m[SUBTASK_NAMES.index(a)][SUBTASK_NAMES.index(b)] += 1
    return m


def oracle(data: DecisionTensors, k: int) -> Decisions:
    """Per row, the expert with the most target hits@k (recommendation always): the upper bound of matching."""
    hits = torch.nan_to_num(data.hits[k], nan=0.0).sum(-1)
    return Decisions(torch.full((len(data),), REC), hits.argmax(-1))


def cv_router(data: DecisionTensors, rows: list[dict[str, Any]], k: int = 10, folds: int = 5) -> Decisions:
    """An optimistic bound on learned matching: a router fitted on the evaluated split itself.

    Per expert, logistic regression on the manager's own features (LLM hidden states and dialogue state)
    predicts whether the expert hits a target at ``k``; each row gets the expert with the highest
    predicted probability, from a model fitted on the other folds of the same split (grouped by
    dialogue). It sees test-split rewards, so no deployable matcher should expect more; where it does
    not beat the best single expert, the features carry no usable signal for matching and the gap to
    the oracle is not learnable from them. Every row recommends (it bounds matching, not detection).
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.preprocessing import StandardScaler

    samples = torch.nonzero(data.is_sample).squeeze(1).numpy()
    x = torch.cat([data.llm, data.state], 1).numpy()[samples]
    y = (torch.nan_to_num(data.hits[k], nan=0.0).sum(-1) > 0).numpy()[samples]
    groups = [rows[int(i)]["id"].rsplit("/", 1)[0] for i in samples]
    prob = np.zeros(y.shape)
    for train, test in GroupKFold(folds).split(x, groups=groups):
        scaler = StandardScaler().fit(x[train])
        for e in range(y.shape[1]):
            if y[train, e].min() == y[train, e].max():  # an expert that never (or always) hits in these folds
                prob[test, e] = float(y[train, e].max())
                continue
            clf = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(x[train]), y[train, e])
            prob[test, e] = clf.predict_proba(scaler.transform(x[test]))[:, 1]
    expert = torch.zeros(len(data), dtype=torch.long)
    expert[torch.from_numpy(samples)] = torch.from_numpy(prob.argmax(1))
    return Decisions(torch.full((len(data),), REC), expert)


BLEND_WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def blend_bound(data: DecisionTensors, best: int, k: int = 10) -> tuple[Decisions, str]:
    """An optimistic bound on blending: the best expert fused with one other (weighted reciprocal-rank
    fusion, weight 1 and ``w``), the other expert and ``w`` in :data:`BLEND_WEIGHTS` chosen on the
    evaluated split itself for HIT@``k``. Every row recommends. Returns the decisions and what was chosen.
    """
    n, width = len(data), len(data.experts)
    candidates = []
    for other in (e for e in range(width) if e != best):
        for w in BLEND_WEIGHTS:
            weights = torch.zeros(n, width)
            weights[:, best], weights[:, other] = 1.0, w
            dec = Decisions(torch.full((n,), REC), torch.full((n,), best), weights)
            candidates.append((float(target_hits(dec, data, k).mean()), f"{data.experts[other]} at {w:g}", dec))
    _, what, dec = max(candidates, key=lambda c: c[0])
    return dec, what


def _fmt_ci(values: list[float]) -> str:
    lo, hi = bootstrap_ci(values)
    mean = sum(values) / max(1, len(values))
    return f"{mean:.4f} [{lo:.4f}, {hi:.4f}]"


def evaluate(args: ManagerEvalArguments) -> Path:
    """Compute every table; return the Markdown file."""
    name = model_name(args.model)
    folder = Path(args.manager) if args.manager else manager_dir(args.dataset, name)
    if folder is None:
        raise FileNotFoundError(f"no trained manager for {args.dataset}; train one with `{train_command(args.dataset, name)}`")
    head, meta = load_manager(folder)
    heads = {"full (SFT + RLPF)": head}
    if (folder / "sft" / "manager.json").is_file():
        heads["w/o RL (SFT only)"] = load_manager(folder / "sft")[0]
    experts = heads["full (SFT + RLPF)"].experts
    train_rows = load_split(args.dataset, "train")
    rows = load_split(args.dataset, args.split)
    feats = load_features(args.dataset, args.split, args.model)
    if meta.get("model") and head_slug(str(meta["model"])) != head_slug(str(feats.get("model"))):  # a head reads its own model's features
        raise ManagerError(f"the manager at {folder} reads {meta['model']!r}, the features are {feats.get('model')!r}'s; "
                           f"train one for it with `{train_command(args.dataset, name)}`")  # fmt: skip
    data = decision_tensors(rows, feats, recommenders_of(args.dataset, args.split))
    if data.experts != experts:
        raise ValueError(
            f"the manager was trained with experts {experts}, the {args.split} data has {data.experts}: rebuild with `python -m rl.decisions --force true`"
        )
    labels = [r["label"] for r in rows]
    majority = max(SUBTASK_NAMES, key=[r["label"] for r in train_rows].count)
    rule = [SUBTASK_NAMES[int(i)] for i in data.state[:, : len(SUBTASK_NAMES)].argmax(-1)]
    decisions = {name: greedy(head, data) for name, head in heads.items()}
    detectors: dict[str, list[str]] = {
        "majority class": [majority] * len(rows),
        "rule (fallback)": rule,
        "TF-IDF + logistic regression": tfidf_detector(train_rows, rows),
    }
    also = [str(name) for name in meta.get("sft_also", [])]
    if also:  # the manager's SFT also read these datasets' training turns: so does a TF-IDF baseline
        pooled = train_rows + [r for name in also for r in load_split(name, "train")]
        detectors[f"TF-IDF + logistic regression, also trained on {' + '.join(also)}"] = tfidf_detector(pooled, rows)
    baselines = list(detectors)
    detectors.update({f"LLM manager, {name}": [SUBTASK_NAMES[int(i)] for i in d.subtask] for name, d in decisions.items()})
    correct = {name: [float(p == y) for p, y in zip(preds, labels, strict=True)] for name, preds in detectors.items()}
    main = "LLM manager, full (SFT + RLPF)"
    comps = {b: compare_paired(correct[main], correct[b]) for b in baselines}
    adj = dict(zip(baselines, holm([comps[b].ttest_p for b in baselines]), strict=True))
    lines = [f"# The manager on {args.dataset}/{args.split} (all {len(rows)} recommender turns; {len(train_rows)} training turns)", ""]
    lines += [
        "## Sub-task detection accuracy",
        "",
        "| detector | accuracy [95% CI] | rows | vs manager: mean diff [95% CI], t-test p (Holm), Wilcoxon p |",
        "|---|---|---|---|",
    ]
    for name, vals in correct.items():
        cmp = ""
        if name in comps:
            c = comps[name]
            cmp = (
                f"{c.mean_diff:+.4f} [{c.diff_ci[0]:+.4f}, {c.diff_ci[1]:+.4f}], p={c.ttest_p:.3g} ({adj[name]:.3g}), p={c.wilcoxon_p:.3g}"
            )
        lines.append(f"| {name} | {_fmt_ci(vals)} | {len(vals)} | {cmp} |")
    lines += ["", "Confusion matrices (rows: corpus label, columns: prediction; order: " + ", ".join(SUBTASK_NAMES) + ")", ""]
    for name, preds in detectors.items():
        lines.append(f"- {name}: {confusion(labels, preds)}")
    # recommendation
    systems: dict[str, Decisions] = {f"expert:{e} (always)": fixed(data, REC, i) for i, e in enumerate(experts)}
    systems["w/o M (always recommend, default expert)"] = fixed(data, REC, 0)
    rule_dec = Decisions(torch.tensor([SUBTASK_NAMES.index(r) for r in rule]), torch.zeros(len(rows), dtype=torch.long))
    systems["rule manager (rule detection, default expert)"] = rule_dec
    if len(experts) > 1:
        systems["all experts blended, equal weights (no manager)"] = Decisions(
            torch.full((len(rows),), REC), torch.zeros(len(rows), dtype=torch.long), torch.full((len(rows), len(experts)), 1 / len(experts))
        )
    for name, d in decisions.items():
        systems[name] = d
    full = decisions["full (SFT + RLPF)"]
    unblended = "full, one matched expert per turn (no blend)"
    if full.weights is not None:
        systems[unblended] = greedy(heads["full (SFT + RLPF)"], data, blend=False)
    # CRSLab scores its recommender on every evaluation row, whatever the conversation module says; the
    # manager's matching head decides on every turn, so the same view exists for it
    crslab_view = "full, its matched expert(s) on every row (CRSLab's view)"
    systems[crslab_view] = Decisions(torch.full((len(rows),), REC), full.expert, full.weights)
    hits = {k: {name: target_hits(d, data, k).tolist() for name, d in systems.items()} for k in (10, 50)}
    for k in (10, 50):
        hits[k]["oracle expert per turn (upper bound)"] = target_hits(oracle(data, k), data, k).tolist()
    n_rows = len(hits[10]["w/o M (always recommend, default expert)"])
    best = max(range(len(experts)), key=lambda e: sum(hits[10][f"expert:{experts[e]} (always)"]))
    best_expert = f"expert:{experts[best]} (always)"
    bounds: dict[str, Decisions] = {}  # fitted on the rows they are scored on
    if len(experts) > 1:
        bounds["router fitted on this split, 5-fold (optimistic bound of matching)"] = cv_router(data, rows)
        blended, what = blend_bound(data, best)
        bounds[f"best expert + {what}, chosen on this split (optimistic bound of blending)"] = blended
    for name, dec in bounds.items():
        for k in (10, 50):
            hits[k][name] = target_hits(dec, data, k).tolist()
    against = [best_expert, "w/o M (always recommend, default expert)", *[s for s in ("w/o RL (SFT only)", unblended) if s in systems]]
    lines += ["", f"## Recommendation on the {int(data.is_sample.sum())} evaluation turns ({n_rows} per-target rows, CRSLab's unit)", ""]
    lines += ["| system | HIT@10 [95% CI] | HIT@50 [95% CI] | recommends on |", "|---|---|---|---|"]
    samp = data.is_sample
    for name in hits[10]:
        share = float((systems[name].subtask[samp] == REC).float().mean()) if name in systems else 1.0
        lines.append(f"| {name} | {_fmt_ci(hits[10][name])} | {_fmt_ci(hits[50][name])} | {share:.3f} |")
    lines += ["", f"Full (SFT + RLPF) against each baseline (one-sided, a > b; Holm over the {len(against) * 2} comparisons):", ""]
    lines += ["| baseline | k | mean diff [95% CI] | t-test p | Holm p | Wilcoxon p |", "|---|---|---|---|---|---|"]
    rec_comps = [(b, k, compare_paired(hits[k]["full (SFT + RLPF)"], hits[k][b])) for b in against for k in (10, 50)]
    for (b, k, c), p in zip(rec_comps, holm([c.ttest_p for _, _, c in rec_comps]), strict=True):
        lines.append(f"| {b} | {k} | {c.table_cells(p)} |")
    lines += ["", f"{crslab_view} against the best single expert (one-sided; Holm over 2):", ""]
    lines += ["| baseline | k | mean diff [95% CI] | t-test p | Holm p | Wilcoxon p |", "|---|---|---|---|---|---|"]
    view_comps = [(k, compare_paired(hits[k][crslab_view], hits[k][best_expert])) for k in (10, 50)]
    for (k, c), p in zip(view_comps, holm([c.ttest_p for _, c in view_comps]), strict=True):
        lines.append(f"| {best_expert} | {k} | {c.table_cells(p)} |")
    if bounds:
        lines += ["", "The optimistic bounds against the best single expert (one-sided; fitted on the rows they are scored on):", ""]
        lines += ["| bound | k | mean diff [95% CI] | t-test p | Holm p | Wilcoxon p |", "|---|---|---|---|---|---|"]
        bound_comps = [(b, k, compare_paired(hits[k][b], hits[k][best_expert])) for b in bounds for k in (10, 50)]
        for (b, k, c), p in zip(bound_comps, holm([c.ttest_p for _, _, c in bound_comps]), strict=True):
            lines.append(f"| {b} | {k} | {c.table_cells(p)} |")
    out = Path(args.results_dir) / "manager" / args.dataset
    out.mkdir(parents=True, exist_ok=True)
    with (out / "detection.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["detector", "accuracy", "ci_low", "ci_high", "rows"])
        for name, vals in correct.items():
            w.writerow([name, sum(vals) / len(vals), *bootstrap_ci(vals), len(vals)])
    with (out / "recommendation.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["system", "hit@10", "hit@10_low", "hit@10_high", "hit@50", "hit@50_low", "hit@50_high", "rows"])
        for name in hits[10]:
            w.writerow(
                [
                    name,
                    sum(hits[10][name]) / n_rows,
                    *bootstrap_ci(hits[10][name]),
                    sum(hits[50][name]) / n_rows,
                    *bootstrap_ci(hits[50][name]),
                    n_rows,
                ]
            )
    borrowed = f" and {meta.get('sft_also_rows')} of {' + '.join(also)} in SFT" if also else ""
    lines += [
        "",
        f"Manager: {folder} (trained on {meta.get('train_rows')} turns{borrowed} in {meta.get('seconds')} s, model {meta.get('model')}, experts {experts}, "
        f"blend temperature {float(heads['full (SFT + RLPF)'].blend_temperature):g}, calibrated on validation).",
    ]
    md = out / "tables.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(ManagerEvalArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    try:
        md = evaluate(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(md.read_text(encoding="utf-8"))
    if args.publish:
        publish("manager", args.dataset, md.read_text(encoding="utf-8"), command_line("eval manager", argv))
    return 0


__all__ = ["RECOMMENDATION", "evaluate", "main"]
