"""End to end on the embedded default model (SmolLM2-135M-Instruct) and real test dialogues.

Run alone with ``pytest -m e2e``; CI runs them with everything else.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.graph import build_crs_graph
from crsdata.loaders import load_samples
from tools.subtasks import SUBTASKS

pytestmark = pytest.mark.e2e


def test_graph_on_real_test_contexts(embedded, real_root):
    g = build_crs_graph(model=embedded, checkpointer=InMemorySaver(), data_root=str(real_root))
    for i, sample in enumerate(load_samples("redial", "test", real_root, limit=3)):
        msgs = [HumanMessage(t.text) if t.role == "user" else AIMessage(t.text) for t in sample.context]
        out = g.invoke({"messages": msgs}, {"configurable": {"thread_id": f"s{i}"}}, context=Context(max_new_tokens=16))
        assert out["subtask"]["name"] in SUBTASKS
        assert out["response"].strip()
        assert [r["stage"] for r in out["trajectory"]] == ["detection", "matching", "execution", "response"]
        assert out["trajectory"][0]["method"] == "head"  # the shipped trained manager decides
        assert all(r.get("seconds", 0) >= 0 for r in out["trajectory"])
        if out["subtask"]["name"] == "recommendation":
            assert len(out["expert_output"]["items"]) == 50


def _cli(args, stdin, env):
    return subprocess.run([sys.executable, "-m", "agent", *args], input=stdin, capture_output=True, text=True, env=env, timeout=600)


def test_chat_cli_keeps_and_resumes_sessions(embedded, real_root, tmp_path):
    env = {**os.environ, "LLMCRS_DATA_DIR": str(real_root), "COLUMNS": "200"}
    db = str(tmp_path / "chat.sqlite")
    first = _cli(["chat", "--db", db, "--thread", "abc"], "Who directed The Shining (1980)?\n", env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "1 sub-task" in first.stdout and "4 response" in first.stdout and "3 output" in first.stdout
    again = _cli(["chat", "--db", db, "--thread", "abc"], "", env)
    assert again.returncode == 0
    assert "you> Who directed The Shining (1980)?" in again.stdout
    assert "crs> " in again.stdout


def test_demo_command(embedded, real_root):
    env = {**os.environ, "LLMCRS_DATA_DIR": str(real_root), "COLUMNS": "200"}
    res = _cli(["demo", "--turns", "1"], "", env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "user>" in res.stdout and "4 response" in res.stdout


def test_the_shipped_reply_adapter_loads_offline_and_its_reply_is_grounded(embedded, real_root):
    """The reply adapter shipped for ReDial loads offline onto the embedded model; with ``tuned_reply`` a
    recommendation reply names the item and a true fact of it and claims nothing unsupported, and the
    trained manager's decisions and the items are the same as without it (the decisions read the base model)."""
    from agent.reply_adapter import reply_adapter_dir, use_reply_adapter

    assert reply_adapter_dir("redial") is not None and use_reply_adapter(embedded, "redial")
    g = build_crs_graph(model=embedded, checkpointer=InMemorySaver(), data_root=str(real_root))
    turn = {"messages": [HumanMessage("Can you recommend a good crime movie?")]}
    on = g.invoke(turn, {"configurable": {"thread_id": "tuned"}}, context=Context(tuned_reply=True))
    off = g.invoke(turn, {"configurable": {"thread_id": "plain"}}, context=Context())
    rec = on["trajectory"][-1]
    assert on["subtask"]["name"] == "recommendation" and rec["method"] == "tuned", rec
    found = rec["grounding"]
    assert found["names_item"] and found["true_attribute"] and not found["claims"] and not found["invented"], (on["response"], found)
    assert off["trajectory"][-1]["method"] == "generated"
    assert (on["subtask"], on["expert"], on["expert_output"]["items"]) == (off["subtask"], off["expert"], off["expert_output"]["items"])
    assert on["trajectory"][0].get("logprobs") == off["trajectory"][0].get("logprobs")
