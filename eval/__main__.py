"""``python -m eval``: run systems over a test split and write the paper's tables and figures.

    python -m eval run --systems full,wo_m,expert:popularity_recommender,llm_only --sample 200
    python -m eval report --dataset redial
    python -m eval manager --dataset redial   # the trained manager on the full test split (cached decisions)
    python -m eval paper --dataset opendialkg  # the paper's tables on the full test split (recommendation, then conversation)
    python -m eval simulate --dataset redial --dialogues 200 --systems full,wo_m,expert:kbrd_recommender  # simulated users
    python -m eval wishes --dataset redial --systems full,wo_m,expert:all  # requests from the catalog: is what was asked met?
    python -m eval scripted --model openai:<m>@<url> --manager prompt  # sub-tasks right in the scripted conversations

``run`` also writes the report when it finishes.
"""

from __future__ import annotations

import sys
import time

from crsdata.paths import SetupError
from eval.harness import RunConfig, results_folder, run
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
    if argv[:1] == ["wishes"]:
        from crsdata.paths import run_cli
        from eval.wishes import main as wishes_main

        return run_cli(lambda: wishes_main(argv[1:]))
    if argv[:1] == ["scripted"]:
        from crsdata.paths import run_cli
        from eval.scripted import main as scripted_main

        return run_cli(lambda: scripted_main(argv[1:]))
    if argv[:1] == ["paper"]:
        from crsdata.paths import run_cli
        from eval.paper import main as paper_main

        return run_cli(lambda: paper_main(argv[1:]))
    from transformers import HfArgumentParser

    if argv[:1] in (["-h"], ["--help"]):  # asked for help: the commands, and success
        print(__doc__)
        print("Each command's options: python -m eval <command> --help")
        return 0
    if argv[:1] not in (["run"], ["report"]):
        print(__doc__, file=sys.stderr)
        print("error: a command is required: run, report, manager, paper, simulate, wishes or scripted", file=sys.stderr)
        return 2
    cmd = argv[0]
    (cfg,) = HfArgumentParser(RunConfig, prog=f"python -m eval {cmd}").parse_args_into_dataclasses(args=argv[1:])  # type: ignore[arg-type]
    try:
        if cmd == "run":
            start = time.perf_counter()
            run(cfg)
            print(f"wall time: {time.perf_counter() - start:.1f}s")
        out = write_report(results_folder(cfg), cfg.data_root)
        print(out.read_text(encoding="utf-8"))
        print(f"tables: {out}; CSV and figures/ beside it")
    except (SetupError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
