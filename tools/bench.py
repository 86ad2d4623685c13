"""``python -m tools.bench``: HIT/MRR/NDCG@1,10,50 (CRSLab definitions) and deduplicated HIT of
each recommendation expert on the test split of each dataset, with training and inference time.

``popularity`` is the floor (training-split mention counts, mentioned items removed);
``popularity+prefs`` is the ``popularity_recommender`` tool (the same counts inside the genres and
people the user likes).

ReDial experts train on ~900 dialogues (the ReDial training file is not available offline), so its
numbers are not comparable with published ones trained on ~10k.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crsdata.loaders import available_datasets, load_samples
from eval.metrics import RecEvaluator
from tools.dialogue import format_turns
from tools.env import expert_env
from tools.learned import CheckpointMissing, checkpoint_dir

COLS = ["hit@1", "hit@10", "hit@50", "mrr@1", "mrr@10", "mrr@50", "ndcg@1", "ndcg@10", "ndcg@50", "dedup_hit@10", "dedup_hit@50"]


def rankers(dataset: str, data_root: str | None) -> dict[str, object]:
    """Ranking functions of every recommendation expert available for ``dataset``."""
    from tools import kbrd, retriever, sasrec
    from tools.popularity import rank_by_preferences

    env = expert_env(dataset, data_root)

    def pure_popularity(text: str, k: int) -> list[str]:
        named = set(env.mentioned_items(text))
        return [n for n in env.ranked_by_popularity if n not in named][:k]

    out: dict[str, object] = {"popularity": pure_popularity, "popularity+prefs": lambda text, k: rank_by_preferences(env, text, k)}
    for name, mod in (("kbrd", kbrd), ("sasrec", sasrec)):
        try:
            out[name] = mod.load_ranker(env)[0].rank  # type: ignore[attr-defined]
        except (CheckpointMissing, Exception) as exc:  # noqa: BLE001 - a dataset without KG has no KBRD
            print(f"{name}/{dataset}: not available ({exc})", file=sys.stderr)
    if (checkpoint_dir(dataset, "retriever") / "metrics.json").is_file():
        out["retriever"] = lambda text, k: retriever.rank(env, text, k)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("--datasets", default=None, help="comma list (default: every dataset found)")
    parser.add_argument("--limit", type=int, default=None, help="first N test turns")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=Path("results") / "experts.json")
    args = parser.parse_args(argv)
    datasets = (
        args.datasets.split(",")
        if args.datasets
        else [d for d in available_datasets(args.data_root) if d in ("redial", "opendialkg", "inspired")]
    )
    console = Console(width=200)
    results = {}
    for ds in datasets:
        samples = load_samples(ds, "test", args.data_root, limit=args.limit)
        table = Table(title=f"{ds}: recommendation experts on {len(samples)} test turns")
        for c in ["expert", *COLS, "train s", "infer ms/turn"]:
            table.add_column(c, justify="right")
        for name, rank in rankers(ds, args.data_root).items():
            ev = RecEvaluator()
            start = time.perf_counter()
            for s in samples:
                ev.add(rank(format_turns(s.context), 50), s.targets, s.context_items)  # type: ignore[operator]
            infer = (time.perf_counter() - start) / max(1, len(samples)) * 1000
            rep = ev.report()
            mfile = checkpoint_dir(ds, name) / "metrics.json"
            train_s = json.loads(mfile.read_text()).get("wall_seconds", 0.0) if mfile.is_file() else 0.0
            results[f"{ds}/{name}"] = {**rep, "train_seconds": train_s, "infer_ms_per_turn": infer}
            table.add_row(name, *(f"{rep[c]:.4f}" for c in COLS), f"{train_s:.0f}", f"{infer:.1f}")
        console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
