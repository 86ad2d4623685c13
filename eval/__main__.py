"""``python -m eval``: run systems over a test split and write the paper's tables and figures.

    python -m eval run --systems full,wo_m,expert:popularity_recommender,llm_only --sample 200
    python -m eval report --dataset redial
    python -m eval manager --dataset redial   # the trained manager on the full test split (cached decisions)
    python -m eval paper --dataset opendialkg  # the paper's tables on the full test split (recommendation, then conversation)
    python -m eval simulate --dataset redial --dialogues 200 --systems full,wo_m,expert:kbrd_recommender  # simulated users

``run`` also writes the report when it finishes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from crsdata.paths import SetupError
from eval.harness import RunConfig, run
from eval.report import write_report


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["manager"]:
        from eval.manager import main as manager_main

        return manager_main(argv[1:])
    if argv[:1] == ["simulate"]:
        from crsdata.paths import run_cli
        from eval.simulate import main as simulate_main

        return run_cli(lambda: simulate_main(argv[1:]))
    if argv[:1] == ["paper"]:
        from crsdata.paths import run_cli
        from eval.paper import main as paper_main

        return run_cli(lambda: paper_main(argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("run", "report"):
        p = sub.add_parser(name)
        p.add_argument("--dataset", default="redial")
        p.add_argument("--split", default="test")
        p.add_argument("--results-dir", type=Path, default=Path("results"))
        p.add_argument("--data-root", default=None)
        p.add_argument("--metrics", default="all", choices=("all", "rec"), help="rec: recommendation metrics only, no response generation")
    p = sub.choices["run"]
    p.add_argument("--systems", default="full", help="comma list: full, wo_si, wo_di, wo_sg, wo_m, wo_e, llm_only, expert:<id>")
    p.add_argument("--limit", type=int, default=None, help="first N turns (after --sample)")
    p.add_argument("--sample", type=int, default=None, help="a seeded random subset of N turns")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=None, help="model spec for the graph and llm_only (default: embedded)")
    p.add_argument("--model-label", default=None, help="suffix for system names, e.g. rl or sft")
    p.add_argument("--demos", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--budget-minutes", type=float, default=60.0)
    p.add_argument("--manager", default="trained", help="trained (default), prompt or rule: who makes the graph systems' decisions")
    args = parser.parse_args(argv)
    try:
        folder = args.results_dir / args.dataset / (args.split if args.metrics == "all" else f"{args.split}_rec")
        if args.cmd == "run":
            cfg = RunConfig(
                dataset=args.dataset, split=args.split, systems=[s.strip() for s in args.systems.split(",") if s.strip()], limit=args.limit,
                sample=args.sample, seed=args.seed, results_dir=args.results_dir, model=args.model, model_label=args.model_label,
                n_demos=args.demos, max_new_tokens=args.max_new_tokens, data_root=args.data_root, budget_minutes=args.budget_minutes, manager=args.manager, metrics=args.metrics,
            )  # fmt: skip
            start = time.perf_counter()
            run(cfg)
            print(f"wall time: {time.perf_counter() - start:.1f}s")
        out = write_report(folder)
        print(out.read_text(encoding="utf-8"))
        print(f"tables: {out}; CSV and figures/ beside it")
    except (SetupError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
