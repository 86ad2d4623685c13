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


def test_a_reply_adapter_built_for_the_embedded_model_loads_and_its_reply_is_grounded(embedded, real_root, tmp_path, monkeypatch):
    """A reply adapter built for the embedded model (here one with random weights, where ``rl.sft`` writes a
    trained one) is found, checked against its sha256s and attached offline; with ``tuned_reply`` a
    recommendation reply names the item and a true fact of it and claims nothing unsupported, and the
    trained manager's decisions and the items are the same as without it (the decisions read the base model)."""
    import json

    from peft import LoraConfig, get_peft_model

    import agent.reply_adapter as reply_adapter
    from agent.llm import embedded_model_dir, load_hf

    folder = tmp_path / "replies" / "redial"
    donor, _ = load_hf(embedded_model_dir())
    get_peft_model(donor, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).save_pretrained(folder)
    meta = {"dataset": "redial", "model_sha256": embedded.weights_sha256, "sha256": reply_adapter.adapter_sha256(folder)}
    (folder / "reply.json").write_text(json.dumps(meta))
    monkeypatch.setattr(reply_adapter, "reply_adapter_dir", lambda dataset: folder if dataset == "redial" else None)
    assert reply_adapter.use_reply_adapter(embedded, "redial") and embedded.has_reply_adapter
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
