"""``python -m tools.train <expert>... --dataset <name>``: train experts (or ``all``) and save their checkpoints.

Experts (:data:`tools.learned.LEARNED_EXPERTS`, in this order): kbrd (needs a KG: redial, opendialkg),
sasrec, retriever (fine-tunes the sentence encoder and indexes the catalog; the slowest: 46 s on
INSPIRED, 11-13 minutes on ReDial and OpenDialKG), reranker (over the others' rankings: train it last).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from crsdata.paths import DataError
from tools.env import expert_env
from tools.learned import (
    LEARNED_EXPERTS,
    SEARCH_GRID,
    SEARCHED,
    TrainConfig,
    checkpoint_dir,
    floor_summary,
    learned_module,
    offer_verdict,
)

EXPERTS = LEARNED_EXPERTS


def train_one(name: str, dataset: str, cfg: TrainConfig, data_root: str | None = None) -> dict[str, object]:
    """Train expert ``name`` on ``dataset``; returns its metrics (with ``train_seconds``)."""
    env = expert_env(dataset, data_root)
    start = time.perf_counter()
    result = learned_module(name).train(env, cfg)
    result["wall_seconds"] = time.perf_counter() - start
    (checkpoint_dir(dataset, name) / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def search(name: str, dataset: str, cfg: TrainConfig, data_root: str | None = None) -> dict[str, object]:
    """Train ``name`` with every combination of :data:`tools.learned.SEARCH_GRID` over ``cfg`` (the grid's
    values replace ``cfg``'s); keep the checkpoint with the best validation HIT@10, ``cfg``'s own values on
    a tie (its metrics list every run under ``search``). The checkpoint is replaced: retrain the experts
    built on it (the reranker) afterwards. If a run fails, the checkpoint found before the search is put back.
    """
    runs: list[dict[str, object]] = []
    best: tuple[float, bool, dict[str, object]] | None = None
    folder = checkpoint_dir(dataset, name)
    with tempfile.TemporaryDirectory(prefix="llmcrs-search-") as scratch:
        before, kept = Path(scratch) / "before", Path(scratch) / "best"
        if folder.is_dir():
            shutil.copytree(folder, before)
        try:
            for values in itertools.product(*SEARCH_GRID.values()):
                chosen = dict(zip(SEARCH_GRID, values, strict=True))
                res = train_one(name, dataset, dataclasses.replace(cfg, **chosen), data_root)
                runs.append({**chosen, "valid_hit@10": res["valid_hit@10"], "epochs_run": len(res.get("history", [])),  # type: ignore[arg-type]
                             "wall_seconds": res["wall_seconds"]})  # fmt: skip
                print(f"{name}/{dataset} search: {runs[-1]}", flush=True)
                key = (float(res["valid_hit@10"]), all(getattr(cfg, k) == v for k, v in chosen.items()))  # type: ignore[arg-type]
                if best is None or key > best[:2]:
                    best = (*key, res)
                    shutil.rmtree(kept, ignore_errors=True)
                    shutil.copytree(folder, kept)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            if before.is_dir():
                shutil.copytree(before, folder)
            raise
        shutil.rmtree(folder)
        shutil.copytree(kept, folder)
    assert best is not None
    result = {**best[2], "search": runs}
    (folder / "metrics.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.train", description=__doc__)
    parser.add_argument("expert", nargs="+", choices=[*EXPERTS, "all"])
    parser.add_argument("--dataset", default="redial")
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--search",
        action="store_true",
        help=f"{', '.join(SEARCHED)}: try every combination of {SEARCH_GRID} (over the flags above), keep the best on validation; "
        "replaces the checkpoint, so retrain the reranker afterwards",
    )
    for field, value in TrainConfig().as_dict().items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=type(value) if value is not None else int, default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in TrainConfig().as_dict()})
    names = EXPERTS if "all" in args.expert else tuple(dict.fromkeys(args.expert))
    for name in names:
        try:
            res = (search if args.search and name in SEARCHED else train_one)(name, args.dataset, cfg, args.data_root)
            print(
                f"{name}/{args.dataset}: valid HIT@10 {res['valid_hit@10']:.4f} in {res['wall_seconds']:.0f}s -> {checkpoint_dir(args.dataset, name)}"
            )
            print(f"{name}/{args.dataset}: " + (offer_verdict(name, args.dataset, res) or floor_summary(res)))
        except DataError as exc:
            print(f"{name}/{args.dataset}: skipped: {exc}", file=sys.stderr)
            if "all" not in args.expert:
                return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
