"""The command lines: shared options anywhere, and a missing part is one ``error:`` line naming what to
run, with exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def test_shared_options_before_or_after_the_subcommand(monkeypatch):
    import agent.__main__ as cli

    seen = []
    monkeypatch.setattr(cli, "cmd_demo", lambda args: seen.append((args.dataset, args.model, args.manager, args.turns)))
    cli.main(["--dataset", "opendialkg", "--model", "hf:/m", "demo", "--turns", "1"])
    cli.main(["demo", "--dataset", "inspired", "--manager", "rule", "--turns", "2"])
    cli.main(["demo"])
    assert seen == [("opendialkg", "hf:/m", "trained", 1), ("inspired", None, "rule", 2), ("redial", None, "trained", 3)]


MISSING = {
    "unknown dataset (chat demo)": (["-m", "agent", "--dataset", "nosuch", "demo", "--turns", "1"], "unknown dataset 'nosuch'"),
    "unknown dataset (decision data)": (["-m", "rl.decisions", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    "unknown dataset (expert bench)": (["-m", "tools.bench", "--datasets", "nosuch"], "unknown dataset 'nosuch'"),
    "unknown dataset (evaluation)": (["-m", "eval", "run", "--dataset", "nosuch", "--limit", "1"], "unknown dataset 'nosuch'"),
    "missing RL config": (["-m", "rl.train", "--config", "/nonexistent.yaml"], "rl/configs/"),
    "missing model folder": (["-m", "agent", "--model", "/nonexistent", "demo", "--turns", "1"], "/nonexistent does not exist"),
    "missing trained manager": (["-m", "eval", "manager", "--dataset", "gorecdial"], "python -m rl.train"),
    "missing chat sessions": (["-m", "agent", "export", "--thread", "x", "--db", "/nonexistent/chat.sqlite"], "python -m agent chat"),
}


@pytest.mark.parametrize("case", list(MISSING))
def test_a_missing_part_is_one_clear_line(case, real_root, tmp_path):
    argv, names = MISSING[case]
    env = {**os.environ, "LLMCRS_DATA_DIR": str(real_root), "LLMCRS_MANAGER_DIR": str(tmp_path / "none")}
    run = subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = run.stdout + run.stderr
    assert run.returncode == 2, out[-2000:]
    assert "Traceback" not in out, out[-2000:]
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert error and names in " ".join(out.split()), out[-2000:]


class ScriptedGraph:
    """Replays a stream: the checked reply as it grows (``custom`` events), then the final response."""

    def __init__(self, replies: list[str], final: str, fallback: bool = False) -> None:
        self.replies, self.final, self.fallback = replies, final, fallback

    def stream(self, *args, **kwargs):
        assert "custom" in kwargs["stream_mode"] and "messages" not in kwargs["stream_mode"]  # the LLM's raw tokens are not read
        for r in self.replies:
            yield "custom", {"reply": r}
        yield "updates", {"respond": {"response": self.final, "trajectory": [{"fallback": self.fallback}]}}


@pytest.mark.parametrize(
    ("replies", "final", "fallback", "shown"),
    [
        (["You might like Heat (1995).", "You might like Heat (1995). It is tense."], "You might like Heat (1995). It is tense. Sorry, KBRD failed.",
         False, "4 response You might like Heat (1995). It is tense. Sorry, KBRD failed."),
        (["Heat (1995) is tense."], "You might like Heat (1995).", True, "(fallback) You might like Heat (1995)."),
        ([], "You might like Heat (1995).", True, "4 response You might like Heat (1995)."),
    ],
)  # fmt: skip
def test_the_terminal_shows_the_response_the_thread_keeps(monkeypatch, replies, final, fallback, shown):
    from rich.console import Console

    import agent.__main__ as cli
    from agent.context import Context

    monkeypatch.setattr(cli, "console", Console(record=True, width=300))
    assert cli.run_turn(ScriptedGraph(replies, final, fallback), "hi", {}, Context()) == final
    out = cli.console.export_text()
    assert shown in out and out.strip().endswith(final)
    assert out.count(final) == 1  # what was shown is completed, or replaced once


def test_the_demo_names_the_experts_a_recommendation_blends():
    from agent.__main__ import _stage_line

    rec = {"stage": "matching", "method": "head", "seconds": 0.1}
    line = _stage_line("match", {"expert": "kbrd", "blend": {"kbrd": 0.62, "popularity": 0.38}, "trajectory": [rec]})
    assert line is not None and "kbrd" in line and "blended with popularity 38%" in line
    line = _stage_line("match", {"expert": "kbrd", "blend": None, "trajectory": [rec]})
    assert line is not None and "blended" not in line


ENTRY_POINTS = ["agent.__main__", "crsdata.__main__", "eval.__main__", "eval.bench_llm", "eval.bench_server", "eval.bench_thread",
                "eval.paper", "eval.simulate", "eval.wishes", "eval.manager", "eval.scripted", "rl.decisions", "rl.responses", "rl.sft", "rl.train",
                "tools.__main__", "tools.bench", "tools.train"]  # fmt: skip


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_every_command_answers_help_and_succeeds(module, capsys):
    """``python -m <module> --help`` prints its usage and exits 0 (an asked-for help is no error)."""
    import importlib

    main = importlib.import_module(module).main
    try:
        code = main(["--help"])
    except SystemExit as exc:  # argparse's help exits
        code = exc.code
    assert code in (0, None)
    out = capsys.readouterr().out
    assert "usage" in out.lower() or "python -m eval run" in out


@pytest.mark.parametrize(("module", "model_flag"), [("agent.__main__", "--model"), ("eval.simulate", "--model"), ("eval.paper", "--model"),
                                                    ("eval.manager", "--model"), ("eval.scripted", "--model"), ("rl.decisions", "--model"),
                                                    ("rl.train", "--model")])  # fmt: skip
def test_every_entry_point_takes_the_model_spec(module, model_flag, capsys):
    """One model spec reaches every command: each lists ``--model`` in its help."""
    import importlib

    with pytest.raises(SystemExit) as done:
        code = importlib.import_module(module).main(["--help"])
        raise SystemExit(code)
    assert done.value.code in (0, None)
    assert model_flag in capsys.readouterr().out


def test_an_endpoint_with_the_default_trained_manager_is_one_clear_error(capsys):
    """`agent chat --model openai:...` without `--manager prompt`: exit 2 and the alternatives, before any connection."""
    from agent.__main__ import main

    assert main(["chat", "--model", "openai:some-model@http://127.0.0.1:9/v1"]) == 2
    said = capsys.readouterr()
    text = " ".join((said.out + said.err).split())  # the console wraps long lines
    assert text.startswith("error:") and "--manager prompt" in text and "Traceback" not in text
