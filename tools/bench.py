"""``python -m tools.bench``: HIT/MRR/NDCG@1,10,50 (CRSLab definitions; HIT@10 and HIT@50 with 95%
bootstrap intervals over the per-target rows) and deduplicated HIT of each recommendation expert on the
test split of each dataset, with training and inference time.

``popularity`` is the floor (training-split mention counts, mentioned items removed);
``offered`` says whether ``default_experts`` offers the expert to model matching, i.e. whether it
beat the floor on the validation split (:func:`tools.learned.floor_evidence`); ``p > floor`` is the
one-sided paired t-test of its test HIT@10 rows against popularity's, ``p > best before`` against the
expert listed above it with the highest test HIT@10 (for the reranker, last: the best single expert);
``popularity+prefs`` is the ``popularity_recommender`` tool (the same counts inside the genres and
people the user likes). ``reranker+repeats`` is the reranker scored as the published figures are: their
models may rank an item the dialogue already named, which the reference turn often names again (a third
of OpenDialKG's test targets); no tool recommends such an item, so this row is not offered.

ReDial experts train on ~900 dialogues (the ReDial training file is not available offline), so its
numbers are not comparable with published ones trained on ~10k.

Each dataset's first line is the time to read one user turn into the preference state
(:func:`parse_timings`), which every recommendation turn pays before any expert runs.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from crsdata.loaders import available_datasets, load_samples
from crsdata.metrics import RecEvaluator, bootstrap_ci, paired_ttest
from crsdata.paths import DataError, run_cli
from crsdata.publish import command_line, publish
from crsdata.registry import dataset_spec
from crsdata.schema import RecSample
from tools.dialogue import format_turns
from tools.env import ExpertEnv, expert_env
from tools.learned import LEARNED_EXPERTS, CheckpointMissing, checkpoint_metrics, learned_module, offer_verdict

COLS = ["hit@1", "hit@10", "hit@50", "mrr@1", "mrr@10", "mrr@50", "ndcg@1", "ndcg@10", "ndcg@50", "dedup_hit@10", "dedup_hit@50"]


def rankers(dataset: str, data_root: str | None) -> dict[str, object]:
    """Ranking functions of every recommendation expert available for ``dataset``."""
    from tools.popularity import floor_rank, rank_by_preferences

    env = expert_env(dataset, data_root)
    out: dict[str, object] = {
        "popularity": lambda text, k: floor_rank(env, text, k),
        "popularity+prefs": lambda text, k: rank_by_preferences(env, text, k),
    }
    for name in LEARNED_EXPERTS:
        module = learned_module(name)
        try:
            # the tool's ranking, and for the reranker the same expert scored as the published figures are (repeats allowed)
            out.update({f"{name}{suffix}": rank for suffix, rank in module.bench_rankers(env).items()})
        except CheckpointMissing as exc:  # untrained: say how to train it; any other failure is a bug and raises
            print(f"{name}/{dataset}: not available ({exc})", file=sys.stderr)
        except DataError as exc:  # the dataset cannot have this expert (KBRD without a knowledge graph)
            print(f"{name}/{dataset}: not applicable ({exc})", file=sys.stderr)
    return out


def parse_timings(env: ExpertEnv, samples: list[RecSample]) -> dict[str, float]:
    """Milliseconds to read one user turn into the preference state (:func:`tools.preferences.fold` of the
    turn's last user utterance onto the state before it: what the graph does each turn), median and p95
    over ``samples``; the linker's memo is cleared first so every utterance is linked afresh."""
    import statistics

    from tools.preferences import empty, fold

    times = []
    for s in samples:
        turns = [(t.role, t.text) for t in s.context]
        users = [i for i, (role, _) in enumerate(turns) if role == "user"]
        if not users:
            continue
        prefs = empty()
        for role, text in turns[: users[-1]]:
            prefs = fold(env, prefs, role, text)  # type: ignore[arg-type]
        env.linker._memo.clear()
        start = time.perf_counter()
        fold(env, prefs, "user", turns[users[-1]][1])
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[int(0.95 * (len(times) - 1))], "turns": float(len(times))}


@dataclass
class BenchArguments:
    """``python -m tools.bench``."""

    datasets: str | None = field(default=None, metadata={"help": "comma list (default: every dataset found)"})
    limit: int | None = field(default=None, metadata={"help": "first N test turns"})
    data_root: str | None = None
    out: str = "results/experts.json"
    publish: bool | None = field(
        default=None, metadata={"help": "write docs/results/experts.md from the JSON (default: when every test turn was run)"}
    )


def _cell(row: dict[str, Any], metric: str) -> str:
    """A metric with its 95% interval where it has one; ``-`` where the catalog was smaller than k."""
    if metric not in row:
        return "-"
    ci = row.get(f"{metric}_ci")
    return f"{row[metric]:.4f}" + (" [{:.3f}, {:.3f}]".format(*ci) if ci else "")


def _tail_cells(row: dict[str, Any]) -> list[str]:
    """Training time, inference time, the two paired tests and whether it is offered, as the tables print them."""
    best = row["test_hit@10_pvalue_vs_best_before"]
    return [
        "-" if row["train_seconds"] is None else f"{row['train_seconds']:.0f}", f"{row['infer_ms_per_turn']:.1f}",
        "-" if row["test_hit@10_pvalue_vs_floor"] is None else f"{row['test_hit@10_pvalue_vs_floor']:.2g}",
        "-" if not best or best["pvalue"] is None else f"{best['expert']} {best['pvalue']:.2g}", row["offered"],
    ]  # fmt: skip


def markdown(results: dict[str, Any], dataset: str) -> str:
    """One dataset's table from the command's JSON (what ``docs/results/experts.md`` shows)."""
    parse = results[f"{dataset}/preference_parsing"]
    lines = [
        f"Reading a user turn into the preference state: median {parse['median_ms']:.2f} ms, p95 {parse['p95_ms']:.2f} ms "
        f"({parse['turns']:.0f} turns).",
        "",
        "| expert | HIT@1 | HIT@10 [95% CI] | HIT@50 [95% CI] | MRR@10 | NDCG@10 | train s | infer ms/turn | p > floor | p > best before | offered |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, row in results.items():
        ds, _, name = key.partition("/")
        if ds != dataset or name == "preference_parsing":
            continue
        cells = [name, *(_cell(row, c) for c in ("hit@1", "hit@10", "hit@50", "mrr@10", "ndcg@10")), *_tail_cells(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    datasets = args.datasets.split(",") if args.datasets else [d for d in available_datasets(args.data_root) if dataset_spec(d).benchmark]
    console = Console(width=260)  # the HIT cells carry their intervals
    results: dict[str, Any] = {}
    for ds in datasets:
        samples = load_samples(ds, "test", args.data_root, limit=args.limit)
        parse = parse_timings(expert_env(ds, args.data_root), samples)
        results[f"{ds}/preference_parsing"] = parse
        console.print(
            f"{ds}: reading a user turn into the preference state: median {parse['median_ms']:.2f} ms, p95 {parse['p95_ms']:.2f} ms"
        )
        table = Table(title=f"{ds}: recommendation experts on {len(samples)} test turns")
        for c in ["expert", *COLS, "train s", "infer ms/turn", "p > floor", "p > best before", "offered"]:
            table.add_column(c, justify="right")
        floor_hits: list[float] = []
        before: dict[str, list[float]] = {}  # test HIT@10 rows of the learned experts measured so far
        for name, rank in rankers(ds, args.data_root).items():
            ev = RecEvaluator()
            hits: list[float] = []
            hits50: list[float] = []
            start = time.perf_counter()
            for s in samples:
                rows = ev.add(rank(format_turns(s.context), 50), s.targets, s.context_items)  # type: ignore[operator]
                hits += [r["hit@10"] for r in rows if "hit@10" in r]
                hits50 += [r["hit@50"] for r in rows if "hit@50" in r]
            infer = (time.perf_counter() - start) / max(1, len(samples)) * 1000
            rep = ev.report()
            if name == "popularity":  # the first ranker: the rows every other expert is tested against
                floor_hits = hits
            # one-sided paired t-test on test HIT@10 rows: is this expert better than popularity?
            # a row "<expert>+<variant>" scores a trained expert another way: "+repeats" as the published protocol
            # does (it may rank a named item, which no other row may: a paired test would measure the protocol),
            # others a variant that is not the tool (the retriever queried by its transformer)
            expert = name if name.startswith("popularity") else name.split("+")[0]
            protocol = name.endswith("+repeats")
            tested = name != "popularity" and not protocol and len(hits) > 1
            pvalue = paired_ttest(hits, floor_hits, alternative="greater").pvalue if tested else None
            best = max(before, key=lambda n: sum(before[n]), default=None)
            p_best = paired_ttest(hits, before[best], alternative="greater").pvalue if tested and best else None
            if not name.startswith("popularity") and expert == name:
                before[name] = hits
            metrics = checkpoint_metrics(ds, expert)
            train_s = metrics.get("wall_seconds", 0.0) if expert == name else None  # a protocol row: trained with its expert
            offered = (
                "floor" if name.startswith("popularity")
                else "protocol" if protocol  # not a tool: the published protocol's view of the expert above
                else "variant" if expert != name  # not a tool: the expert above, another way, for comparison
                else "yes" if metrics and offer_verdict(name, ds, metrics) is None else "withheld"
            )  # fmt: skip
            # a catalog smaller than k has no HIT@k rows (CRSLab skips short lists): no interval, "-" in the table
            ci = {f"hit@{k}_ci": list(bootstrap_ci(rows)) for k, rows in ((10, hits), (50, hits50)) if rows}
            results[f"{ds}/{name}"] = {
                **rep,
                **ci,
                "train_seconds": train_s,
                "infer_ms_per_turn": infer,
                "offered": offered,
                "test_hit@10_pvalue_vs_floor": pvalue,
                "test_hit@10_pvalue_vs_best_before": {"expert": best, "pvalue": p_best} if best else None,
                "valid_vs_floor": metrics.get("floor"),
            }
            row = results[f"{ds}/{name}"]  # the JSON row, intervals included: the console and the page print the same cells
            table.add_row(name, *(_cell(row, c) for c in COLS), *_tail_cells(row))
        console.print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    if args.publish if args.publish is not None else args.limit is None:
        for ds in datasets:
            part = {k: v for k, v in results.items() if k.startswith(f"{ds}/")}
            publish("experts", ds, markdown(results, ds), command_line("tools.bench", argv), data=part)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
