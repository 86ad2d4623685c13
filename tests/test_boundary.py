"""The input boundary and the bounded state, through ``build_crs_graph()`` with a checkpointer."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.boundary import MAX_MESSAGE_CHARS, MESSAGES_WINDOW, RESULTS_WINDOW
from agent.graph import build_crs_graph
from tests.conftest import FakeChat, RecordingFake


def echo_llm() -> RecordingFake:
    """A fake LLM that always answers (the rule manager decides; the LLM writes responses)."""
    from itertools import cycle

    from langchain_core.messages import AIMessage

    return RecordingFake(messages=cycle([AIMessage("Sure, here is something for you.")]), prompts=[])


@pytest.fixture
def graph(real_root):
    from tools import default_experts

    return build_crs_graph(model=echo_llm(), tools=default_experts("redial", str(real_root), learned=False),
                           checkpointer=InMemorySaver(), data_root=str(real_root), manager="rule")  # fmt: skip


MALFORMED = {
    "list of arbitrary dicts": {"messages": [{"role": "user", "content": [{"foo": "bar"}, {"type": "weird", "x": 1}]}]},
    "dict that is no message": {"messages": [{"foo": "bar"}]},
    "oversized message": {"messages": [{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}]},
    "no messages key": {},
    "empty message list": {"messages": []},
    "content of a wrong type": {"messages": [{"role": "user", "content": 42}]},
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_is_refused_before_any_model_and_leaves_the_thread(graph, case):
    config = {"configurable": {"thread_id": "t"}}
    first = graph.invoke({"messages": [HumanMessage("I like horror movies")]}, config)
    llm = graph.resources.model  # type: ignore[attr-defined]
    calls, before = len(llm.prompts), graph.get_state(config).values["messages"]
    out = graph.invoke(MALFORMED[case], config)
    assert out["error"].startswith("input refused:")
    assert "messages" in out["error"]  # names the field
    if case == "oversized message":
        assert str(MAX_MESSAGE_CHARS) in out["error"]  # and the limit
    assert len(llm.prompts) == calls  # no model ran
    assert [m.id for m in graph.get_state(config).values["messages"]] == [m.id for m in before]
    again = graph.invoke({"messages": [HumanMessage("something scary please")]}, config)  # the thread still works
    assert again["response"] and not again["error"] and first["response"]


def test_state_per_turn_does_not_grow_with_the_thread(graph):
    config = {"configurable": {"thread_id": "long"}}
    saver = graph.checkpointer
    sizes = {}
    for turn in range(1, 61):
        text = ["I like The Shining (1980)", "why that one?", "Who directed it?", "something else?", "hello"][turn % 5]
        graph.invoke({"messages": [HumanMessage(f"{text} ({turn})")]}, config)
        if turn in (20, 60):
            values = graph.get_state(config).values
            sizes[turn] = len(saver.serde.dumps_typed(values)[1])
    values = graph.get_state(config).values
    assert len(values["messages"]) <= MESSAGES_WINDOW and len(values["results"]) <= RESULTS_WINDOW
    assert sizes[60] <= sizes[20] * 1.2, sizes  # bounded, not growing with the thread
    assert "(1)" in values["earlier"] or "(2)" in values["earlier"] or values["earlier"]  # older words folded in
    history = {m.id: m for snap in graph.get_state_history(config) for m in snap.values.get("messages", [])}
    assert sum(m.type == "human" for m in history.values()) == 60  # nothing the user said is lost


def test_fake_chat_is_not_a_hidden_state_model():
    from agent.manager import HiddenStateModel

    assert not isinstance(FakeChat(messages=iter([])), HiddenStateModel)


def test_turn_saver_keeps_one_state_per_turn_and_the_whole_transcript(real_root, tmp_path):
    from agent.__main__ import transcript
    from agent.memory import open_checkpointer
    from tools import default_experts

    def stored(saver) -> int:
        rows = saver.conn.execute("SELECT COALESCE(SUM(LENGTH(checkpoint) + LENGTH(metadata)), 0) FROM checkpoints").fetchone()[0]
        return rows + saver.conn.execute("SELECT COALESCE(SUM(LENGTH(value)), 0) FROM writes").fetchone()[0]

    config = {"configurable": {"thread_id": "long"}}
    tools = default_experts("redial", str(real_root), learned=False)
    with open_checkpointer(tmp_path / "chat.sqlite") as saver:
        graph = build_crs_graph(model=echo_llm(), tools=tools, checkpointer=saver, data_root=str(real_root), manager="rule")
        sizes = {}
        for turn in range(1, 41):
            graph.invoke({"messages": [HumanMessage(f"I like The Shining (1980), turn {turn}")]}, config)
            sizes[turn] = stored(saver)
        checkpoints = saver.conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        assert checkpoints <= 40 + 6  # one per finished turn, plus the steps of the current one
        # The 40th turn adds no more than the 20th (a saver keeping every step adds ~7 states a turn).
        assert sizes[40] - sizes[39] <= 1.2 * (sizes[20] - sizes[19]) + 2048, sizes
        assert sizes[40] / 40 <= 2.5 * len(saver.serde.dumps_typed(graph.get_state(config).values)[1])
        rows = transcript(graph, config)
    said = [r["content"] for r in rows if r["role"] == "user"]
    assert said == [f"I like The Shining (1980), turn {t}" for t in range(1, 41)]  # nothing lost, in order
    assert sum(r["role"] == "assistant" for r in rows) == 40
    with open_checkpointer(tmp_path / "chat.sqlite") as saver:  # another process resumes the thread
        graph = build_crs_graph(model=echo_llm(), tools=tools, checkpointer=saver, data_root=str(real_root), manager="rule")
        out = graph.invoke({"messages": [HumanMessage("why that one?")]}, config)
        assert out["response"] and not out["error"] and out["results"]
