"""The evaluation harness: honesty, metric values, tables, resumption."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage

from agent.config import GraphConfig
from agent.context import Context
from crsdata.loaders import load_samples
from crsdata.metrics import RecEvaluator, conversation_metrics
from crsdata.schema import RecSample, Turn
from eval.harness import RunConfig, done_ids, result_path, results_folder, run_system, select_samples
from eval.report import build_report, hit_rows, named_recommendations, write_report
from sim.systems import ExpertSystem, GraphSystem
from tests.conftest import RecordingFake
from tools import default_experts
from tools.base import expert_tool


def cycling_fake(*replies):
    return RecordingFake(messages=itertools.cycle([AIMessage(r) for r in replies]), prompts=[])


def test_ground_truth_never_reaches_the_system(real_root, tmp_path):
    seen: list[str] = []

    def spy_recommender(category: str, dialogue_context: str) -> dict:
        """Spy.

        Args:
            category: c.
            dialogue_context: d.
        """
        seen.append(category + dialogue_context)
        return {"items": ["Heat (1995)"], "text": "Heat (1995)"}

    spy = expert_tool(spy_recommender, "recommendation")
    sample = RecSample(
        "redial",
        "test",
        "d1",
        1,
        (Turn("user", "I like zzqx movies, what should I see?"),),
        ("Target Movie QQ77 (1999)",),
        "REFERENCE-ZZ9 answer",
    )
    llm = cycling_fake('{"name": "recommendation"}', "You might like Heat (1995).")
    system = GraphSystem("full", GraphConfig(data_root=str(real_root), n_demos=1, manager="prompt"), Context(), model=llm)
    system.graph.resources._tools = [spy]  # type: ignore[attr-defined]
    path = tmp_path / "r.jsonl"
    run_system(system, [sample], path, progress=False)
    everything = "\n".join(llm.prompts + seen)
    assert "zzqx" in everything  # the context did arrive
    assert "QQ77" not in everything and "REFERENCE-ZZ9" not in everything
    row = json.loads(path.read_text())
    assert row["targets"] == ["Target Movie QQ77 (1999)"] and row["reference"] == "REFERENCE-ZZ9 answer"
    assert row["ranked"] == ["Heat (1995)"] and row["subtask"] == "recommendation"


def test_report_matches_direct_computation_and_resumes(real_root, tmp_path):
    cfg = RunConfig(dataset="redial", split="test", limit=6, results_dir=tmp_path, data_root=str(real_root))
    samples = select_samples(cfg)
    tool = next(t for t in default_experts("redial", str(real_root)) if t.name == "popularity_recommender")
    from tools.env import expert_env

    system = ExpertSystem(tool, 50, expert_env("redial", str(real_root)).linker)
    path = result_path(cfg, system.name)
    assert run_system(system, samples[:3], path, progress=False) == 3
    assert run_system(system, samples, path, progress=False) == 3  # only the 3 new turns
    assert done_ids(path) == {s.sample_id for s in samples}
    with path.open("a") as fh:
        fh.write('{"torn": ')  # an interrupted write is ignored on resume
    assert len(done_ids(path)) == 6
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith('{"torn"')) + "\n")

    direct = RecEvaluator(short_lists="miss")
    hyps = []
    for s in samples:
        out = tool.invoke(
            {
                "category": "movie",
                "dialogue_context": "\n".join(f"{'User' if t.role == 'user' else 'Assistant'}: {t.text}" for t in s.context),
                "top_k": 50,
            }
        )
        direct.add(out["items"], s.targets, s.context_items)
        hyps.append(out["text"])
    want = direct.report()
    rep = build_report(path.parent)
    got = rep.metrics[system.name]
    for key in ("hit@1", "hit@10", "hit@50", "mrr@50", "ndcg@50", "dedup_hit@50"):
        assert got[key] == pytest.approx(want[key]), key
    stored = [json.loads(line) for line in path.read_text().splitlines()]
    for dedup, key in ((False, "hit@10"), (True, "dedup_hit@10")):  # the paired tests' rows are the table's rows
        per_row = hit_rows(stored, 10, dedup)
        assert sum(per_row.values()) / len(per_row) == pytest.approx(want[key]), key
    conv = conversation_metrics(hyps, [s.response for s in samples])
    assert got["bleu1_crslab"] == pytest.approx(conv["bleu1_crslab"])
    assert rep.n_turns == 6

    md = write_report(path.parent).read_text()
    header = next(line for line in md.splitlines() if line.startswith("| system | n_rows | hit@1"))
    assert header.count("|") == 17  # system + rows + 11 metrics + the named-film counts + the tests column
    named = dict(zip(header.split("|"), next(line for line in md.splitlines() if line.startswith("| expert:")).split("|"), strict=True))
    assert float(named[" named_top1 "].strip().strip("*")) == named_recommendations([r for r in stored if r["ranked"]])[0]
    hit10 = next(line for line in md.splitlines() if line.startswith("| expert:")).split("|")[4]
    assert re.search(r"\[\d\.\d{3}, \d\.\d{3}\]", hit10), hit10  # HIT@10 with its 95% interval
    assert (path.parent / "recommendation.csv").read_text().splitlines()[0].startswith("system,hit@1,hit@10,hit@50")
    assert (path.parent / "figures" / "systems_recommendation.png").stat().st_size > 1000


def test_eval_run_parses_its_config_dataclass_flag_for_field(tmp_path):
    """``python -m eval run`` reads RunConfig itself (no flags copied by hand): a comma list of systems,
    the old flag spellings as aliases, and a clear error for a metrics value it does not know."""
    from transformers import HfArgumentParser

    from eval.__main__ import main

    parser = HfArgumentParser(RunConfig)
    argv = ["--systems", "full,wo_m", "expert:kbrd_recommender", "--demos", "2", "--results-dir", str(tmp_path), "--metrics", "rec"]
    (cfg,) = parser.parse_args_into_dataclasses(args=argv)
    assert cfg.systems == ["full", "wo_m", "expert:kbrd_recommender"] and cfg.n_demos == 2
    assert results_folder(cfg) == tmp_path / "redial" / "test_rec"
    assert RunConfig(systems=["full, wo_e"]).systems == ["full", "wo_e"]
    with pytest.raises(SystemExit):
        parser.parse_args_into_dataclasses(args=["--metrics", "bleu"])
    assert main(["report", "--results-dir", str(tmp_path)]) == 2  # nothing run yet: an error naming the command, no traceback


def test_seeded_sample_is_deterministic(real_root):
    a = select_samples(RunConfig(sample=20, seed=3, data_root=str(real_root)))
    b = select_samples(RunConfig(sample=20, seed=3, data_root=str(real_root)))
    assert [s.sample_id for s in a] == [s.sample_id for s in b]
    order = [s.sample_id for s in load_samples("redial", "test", real_root)]
    assert sorted(order.index(s.sample_id) for s in a) == [order.index(s.sample_id) for s in a]


def test_unknown_system_is_a_clear_error(real_root, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "eval", "run", "--systems", "expert:nope", "--limit", "1", "--results-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "unknown expert 'nope'" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.e2e
def test_harness_end_to_end_on_the_embedded_default(real_root, tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "eval", "run", "--systems", "full,wo_m,expert:popularity_recommender", "--limit", "3", "--results-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    folder = tmp_path / "redial" / "test"
    rows = [json.loads(line) for line in (folder / "full.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["seconds"]["detection"] > 0 for r in rows)
    assert "### Ablations (Tables 6-8)" in (folder / "tables.md").read_text()
    assert (folder / "figures" / "ablation_recommendation.png").is_file()


@pytest.mark.e2e
def test_paper_command_writes_both_passes(real_root, tmp_path):
    """`python -m eval paper` on a few turns: the recommendation pass without generation, then the conversation pass."""
    from eval.paper import main as paper

    args = ["--dataset", "redial", "--limit", "4", "--conv_sample", "2", "--conv_systems", "full", "--results_dir", str(tmp_path)]
    assert paper([*args, "--data_root", str(real_root)]) == 0
    rec, conv = tmp_path / "redial" / "test_rec", tmp_path / "redial" / "test"
    rec_md, conv_md = (rec / "tables.md").read_text(), (conv / "tables.md").read_text()
    assert "| full |" in rec_md and "| expert:popularity_recommender |" in rec_md
    assert "Conversation (Table 5)" not in rec_md and "Conversation (Table 5)" in conv_md
    rows = [json.loads(line) for line in (rec / "full.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(r["fallbacks"].get("response") is False for r in rows)  # template, not a failed LLM
    assert len((conv / "full.jsonl").read_text().splitlines()) == 2
