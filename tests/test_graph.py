"""The four-stage graph with fake chat models: every node, route, ablation and failure."""

from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.graph import build_crs_graph
from agent.nodes import EMPTY_TURN
from tests.conftest import fake_llm
from tools import default_experts
from tools.base import expert_tool, register_expert, unregister_expert
from tools.remote import remote_experts
from tools.serving import ExpertServer
from tools.subtasks import DETAIL_SEARCH, ELICITATION, EXPLANATION, RECOMMENDATION, SUBTASKS

CTX = Context(top_k=10)


def fixed_recommender(name: str, items: list[str], doc: str = "Fixed-list recommender used in tests."):
    def recommend(category: str, dialogue_context: str) -> dict:
        """Placeholder.

        Args:
            category: The item category.
            dialogue_context: The dialogue so far.
        """
        return {"items": list(items), "text": f"Try {items[0]}."}

    recommend.__doc__ = doc + "\n\nArgs:\n    category: The item category.\n    dialogue_context: The dialogue so far.\n"
    return expert_tool(recommend, RECOMMENDATION, name=name)


@pytest.fixture
def experts(real_root, redial_env):
    return default_experts("redial", str(real_root), learned=False)


def graph_with(llm, experts, real_root, **kw):
    """The graph with the LLM prompted on the paper's prompts (the fakes script its decisions)."""
    return build_crs_graph(
        model=llm, tools=experts, checkpointer=kw.pop("checkpointer", InMemorySaver()), data_root=str(real_root), n_demos=kw.pop("n_demos", 2),
        manager=kw.pop("manager", "prompt"), **kw,
    )  # fmt: skip


def run(graph, text, thread="t"):
    return graph.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}}, context=CTX)


def stages(out):
    return [(r["stage"], r["method"]) for r in out["trajectory"]]


def test_full_turn_with_matching_between_two_recommenders(experts, real_root):
    extra = fixed_recommender("fixed_rec", ["Heat (1995)", "Ronin (1998)"])
    llm = fake_llm('{"name": "recommendation", "args": {}}', '{"id": "fixed_rec"}', "You might like Heat (1995), a tense thriller.")
    g = graph_with(llm, [*experts, extra], real_root)
    out = run(g, "I love heist thrillers like The Town (2010). Any suggestions?")
    assert out["subtask"]["name"] == RECOMMENDATION
    assert out["subtask"]["output_type"] == "item"
    assert set(out["candidates"]) == {"popularity_recommender", "fixed_rec"}
    assert out["expert"] == "fixed_rec"
    assert out["expert_output"]["items"][0] == "Heat (1995)"
    assert out["response"] == "You might like Heat (1995), a tense thriller."
    assert isinstance(out["messages"][-1], AIMessage) and out["messages"][-1].content == out["response"]
    assert stages(out) == [("detection", "parsed"), ("matching", "parsed"), ("execution", "tool"), ("response", "generated")]
    assert not any(r["fallback"] for r in out["trajectory"])
    assert "Heat (1995)" in out["summary"] and "fixed_rec" in out["summary"] and "recommendation" in out["summary"]
    # the matching prompt lists every candidate's ID and docstring; the detection prompt carries the schema
    detection_prompt, matching_prompt, response_prompt = llm.prompts
    assert all(t.schema_line() in detection_prompt for t in SUBTASKS.values())
    assert (
        "[fixed_rec, Fixed-list recommender used in tests." in matching_prompt
        and "[popularity_recommender, Popularity recommender" in matching_prompt
    )
    assert "Expert output: Try Heat (1995)." in response_prompt


def test_single_candidate_skips_the_matching_llm_call(experts, real_root):
    llm = fake_llm('{"name": "item detail search"}', "Stanley Kubrick directed it.")
    out = run(graph_with(llm, experts, real_root), "Who directed The Shining (1980)?")
    assert out["subtask"]["name"] == DETAIL_SEARCH
    assert out["subtask"]["args"] == {"item name": "The Shining (1980)", "item attribute": "director"}
    assert stages(out)[1] == ("matching", "skipped")
    assert out["expert_output"]["values"] == ["Stanley Kubrick"]
    assert len(llm.prompts) == 2  # detection + response only


def test_malformed_detection_is_retried_with_the_error(experts, real_root):
    llm = fake_llm("sure thing!!", '{"name": "user preference elicitation"}', "What genres do you like?")
    out = run(graph_with(llm, experts, real_root), "hello there")
    rec = out["trajectory"][0]
    assert out["subtask"]["name"] == ELICITATION and rec["fallback"] is False
    assert [a["completion"] for a in rec["attempts"]] == ["sure thing!!", '{"name": "user preference elicitation"}']
    assert "invalid" in llm.prompts[1] and "sure thing!!" in llm.prompts[1]


def test_broken_output_twice_falls_back_deterministically(experts, real_root):
    llm = fake_llm('{"name": "dance"', "{{{", "ok")
    out = run(graph_with(llm, experts, real_root), "Why is The Shining (1980) so good?")
    rec = out["trajectory"][0]
    assert rec["fallback"] is True and rec["error"]
    assert out["subtask"]["name"] == EXPLANATION  # the heuristic: "why" + a known item
    assert out["subtask"]["args"]["item name"] == "The Shining (1980)"


def test_unknown_expert_id_falls_back_to_first_candidate(experts, real_root):
    extra = fixed_recommender("fixed_rec", ["Heat (1995)"])
    llm = fake_llm('{"name": "recommendation"}', '{"id": "gpt-9"}', '{"id": "still-wrong"}', "You might like it.")
    out = run(graph_with(llm, [*experts, extra], real_root), "I like comedies, what should I watch?")
    match = out["trajectory"][1]
    assert match["stage"] == "matching" and match["fallback"] is True and "gpt-9" in match["attempts"][0]["error"]
    assert out["expert"] == "popularity_recommender"


def test_empty_dialogue_gets_a_clear_answer_without_llm_calls(experts, real_root):
    llm = fake_llm()
    g = graph_with(llm, experts, real_root)
    out = g.invoke({"messages": []}, {"configurable": {"thread_id": "e"}}, context=CTX)
    assert out["response"] is None and "no new message under 'messages'" in out["error"]  # refused at the boundary
    out = run(g, "   ", thread="e2")
    assert out["response"] == EMPTY_TURN
    assert llm.prompts == []


def test_dynamic_registration_needs_no_prompt_edit(experts, real_root):
    extra = fixed_recommender("registered_rec", ["Alien (1979)"], doc="A registered sci-fi recommender.")
    register_expert(extra)
    try:
        llm = fake_llm('{"name": "recommendation"}', '{"id": "registered_rec"}', "Alien (1979) it is.")
        out = run(graph_with(llm, experts, real_root), "I want sci-fi horror like The Thing (1982)")
        assert "registered_rec" in out["candidates"]
        assert "[registered_rec, A registered sci-fi recommender." in llm.prompts[1]
        assert out["expert_output"]["items"] == ["Alien (1979)"]
    finally:
        unregister_expert("registered_rec")
    with pytest.raises(ValueError, match="declares no sub-task"):
        from langchain_core.tools import tool

        @tool
        def stray(x: str) -> str:
            """Nothing."""
            return x

        register_expert(stray)


def test_why_that_one_explains_the_item_recommended_before(experts, real_root):
    rec = fixed_recommender("fixed_rec", ["The Shining (1980)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [rec]
    llm = fake_llm('{"name": "recommendation"}', "You might like The Shining (1980).", '{"name": "explanation"}', "Because of Kubrick.")
    g = graph_with(llm, tools, real_root)
    run(g, "I loved Eyes Wide Shut (1999), anything similar?")
    out = run(g, "Why that one?")
    assert out["subtask"]["name"] == EXPLANATION
    assert out["subtask"]["args"]["item name"] == "The Shining (1980)"
    assert out["expert_output"]["item"] == "The Shining (1980)"
    assert len(out["results"]) == 2 and out["results"][0]["expert"] == "fixed_rec"
    assert [m.type for m in out["messages"]] == ["human", "ai", "human", "ai"]


def test_wo_m_always_recommends_without_detection_call(experts, real_root):
    llm = fake_llm("You might like something.")
    out = run(graph_with(llm, experts, real_root, ablations="wo_m"), "hi")
    assert out["subtask"]["name"] == RECOMMENDATION
    assert stages(out)[:2] == [("detection", "skipped"), ("matching", "skipped")]
    assert len(llm.prompts) == 1


def test_wo_si_and_wo_di_remove_their_instructions(experts, real_root):
    llm = fake_llm('{"name": "user preference elicitation"}', "What do you like?")
    run(graph_with(llm, experts, real_root, ablations="wo_si"), "hello")
    assert not any(t.schema_line() in llm.prompts[0] for t in SUBTASKS.values())
    assert "Sub-task: {" in llm.prompts[0]  # demonstrations still there

    llm = fake_llm('{"name": "user preference elicitation"}', "What do you like?")
    run(graph_with(llm, experts, real_root, ablations="wo_di"), "hello")
    assert "examples, each a dialogue context and the sub-task it calls for:\n(none)" in llm.prompts[0]
    assert SUBTASKS[RECOMMENDATION].schema_line() in llm.prompts[0]


def test_zero_demonstrations(experts, real_root):
    llm = fake_llm('{"name": "user preference elicitation"}', "What do you like?")
    run(graph_with(llm, experts, real_root, n_demos=0), "hello")
    assert "(none)" in llm.prompts[0]


def test_wo_sg_gives_the_raw_output(experts, real_root):
    llm = fake_llm('{"name": "item detail search"}', "Kubrick.")
    run(graph_with(llm, experts, real_root, ablations="wo_sg"), "Who directed The Shining (1980)?")
    response_prompt = llm.prompts[-1]
    assert "Sub-task: \n" in response_prompt and '"values": ["Stanley Kubrick"]' in response_prompt


def test_wo_e_lets_the_llm_do_the_subtask(experts, real_root):
    llm = fake_llm('{"name": "item detail search"}', "I believe it was Stanley Kubrick.", "Stanley Kubrick, I think.")
    out = run(graph_with(llm, experts, real_root, ablations="wo_e"), "Who directed The Shining (1980)?")
    assert out["expert"] == "llm" and out["candidates"] == ["llm"]
    assert out["expert_output"]["text"] == "I believe it was Stanley Kubrick."
    assert ("execution", "generated") in stages(out)


def test_wo_e_recommendation_ranks_embedding_candidates(real_root):
    from tools import default_experts as defaults

    inspired = defaults("inspired", str(real_root), learned=False)
    llm = fake_llm('{"name": "recommendation"}', '{"item": "nonsense"}', "no idea", "Enjoy!")
    g = build_crs_graph(
        model=llm,
        tools=inspired,
        checkpointer=InMemorySaver(),
        dataset="inspired",
        data_root=str(real_root),
        ablations="wo_e",
        n_demos=0,
        manager="prompt",
    )
    out = run(g, "I want a funny animated movie for kids")
    items = out["expert_output"]["items"]
    assert len(items) == 50 and len(set(items)) == 50
    exe = next(r for r in out["trajectory"] if r["stage"] == "execution")
    assert exe["fallback"] is True  # the LLM named no candidate: retrieval order kept


def test_dead_remote_expert_keeps_the_conversation(experts, real_root):
    with ExpertServer(experts) as server:
        remote = remote_experts(server.url)
    llm = fake_llm('{"name": "item detail search"}', "x", '{"name": "item detail search"}', "y")
    g = graph_with(llm, remote, real_root)
    out = run(g, "Who directed The Shining (1980)?")  # the server is gone
    exe = next(r for r in out["trajectory"] if r["stage"] == "execution")
    assert exe["fallback"] is True and "unreachable" in exe["error"]
    assert "unavailable" in out["expert_output"]["text"]
    out = run(g, "And who starred in it?")
    assert [m.content for m in out["messages"] if m.type == "human"] == ["Who directed The Shining (1980)?", "And who starred in it?"]


def test_remote_expert_matches_in_process(experts, real_root):
    ctx = "User: I like horror movies like The Babadook (2014)"
    with ExpertServer(experts) as server:
        remote = {t.name: t for t in remote_experts(server.url)}
        for tool in experts:
            args = {"category": "movie", "dialogue_context": ctx, "item_name": "The Shining", "item_attribute": "cast"}
            args = {k: v for k, v in args.items() if k in tool.args}
            assert remote[tool.name].invoke(args) == json.loads(json.dumps(tool.invoke(args)))
            assert remote[tool.name].description == tool.description
            assert remote[tool.name].metadata["subtask"] == tool.metadata["subtask"]


def test_llm_failure_in_response_falls_back_to_expert_output(experts, real_root):
    class Exploding(type(fake_llm())):  # type: ignore[misc]
        def _generate(self, messages, *a, **k):
            if "Response Generation" in str(messages[-1].content):
                raise ConnectionError("endpoint down")
            return super()._generate(messages, *a, **k)

    llm = Exploding(messages=iter([AIMessage('{"name": "item detail search"}')]), prompts=[])
    out = run(graph_with(llm, experts, real_root), "Who directed The Shining (1980)?")
    rec = out["trajectory"][-1]
    assert rec["fallback"] is True and "endpoint down" in rec["error"]
    assert out["response"] == "The Shining (1980) was directed by Stanley Kubrick."  # a sentence, not a field


def test_ungrounded_recommendation_response_is_replaced(experts, real_root):
    extra = fixed_recommender("fixed_rec", ["Heat (1995)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    llm = fake_llm('{"name": "recommendation"}', "Watch Titanic!")
    out = run(graph_with(llm, tools, real_root), "something with Al Pacino please")
    assert out["response"] == "You might like Heat (1995), a movie with Al Pacino, as you asked."  # the wish it meets
    assert (
        out["expert_output"]["reason"] == "Heat (1995) is a movie with Al Pacino, as you asked."
        and "Reason: Heat (1995) is a movie with Al Pacino" in out["summary"]
    )
    # "Titanic" is no name the summary gives: the sentence goes, nothing is left, the template answers
    rec = out["trajectory"][-1]
    assert rec["fallback"] and rec["error"] == "dropped 1 sentence(s) the summary does not support: 'Watch Titanic!'"
    llm = fake_llm('{"name": "recommendation"}', "What a night for a movie.")  # supported, but it does not name the item
    out = run(graph_with(llm, tools, real_root), "something with Al Pacino please")
    assert out["response"].startswith("You might like Heat (1995)")
    assert out["trajectory"][-1]["error"] == "response does not name the recommended item"


def test_a_recommendation_names_its_reason_from_what_the_user_said(experts, real_root):
    """The expert output and the summary the LLM answers from carry one grounded reason (a shared person,
    genre or liked item) when there is one, and none when the item shares nothing with what the user said."""
    extra = fixed_recommender("fixed_rec", ["The Godfather (1972)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    llm = fake_llm('{"name": "recommendation"}', "", '{"name": "recommendation"}', "")
    g = graph_with(llm, tools, real_root)
    out = run(g, "I loved Heat (1995), anything like it?", thread="a")
    assert out["expert_output"]["reason"] == "Al Pacino stars in both The Godfather (1972) and Heat (1995)."
    # the empty LLM reply falls back to the template, which says the reason; the summary carries it for a capable LLM
    assert out["response"] == "You might like The Godfather (1972). Al Pacino stars in both The Godfather (1972) and Heat (1995)."
    assert "Reason: Al Pacino" in out["summary"]
    plain = run(g, "hello, what should I watch?", thread="b")
    # no reason: the reply says what the catalog says of the item, and the grounding check finds a true fact in it
    assert "reason" not in plain["expert_output"]
    assert plain["response"] == "You might like The Godfather (1972), a crime and drama movie directed by Francis Ford Coppola."
    grounding = plain["trajectory"][-1]["grounding"]
    assert grounding["names_item"] and grounding["true_attribute"] and not grounding["claims"]


def test_bad_build_arguments():
    with pytest.raises(ValueError, match="unknown ablation"):
        build_crs_graph(ablations="wo_everything")
    with pytest.raises(ValueError, match="n_demos"):
        build_crs_graph(n_demos=-1)


def test_no_item_is_offered_twice_and_no_question_is_asked_twice(experts, real_root):
    from itertools import cycle

    from langchain_core.messages import AIMessage

    from tests.conftest import RecordingFake

    llm = RecordingFake(messages=cycle([AIMessage("")]), prompts=[])  # empty answers: the template answers
    g = graph_with(llm, experts, real_root, manager="rule")
    first = run(g, "I like The Shining (1980), something similar?", thread="o")
    second = run(g, "I like The Shining (1980), something similar?", thread="o")
    assert first["subtask"]["name"] == second["subtask"]["name"] == RECOMMENDATION
    assert first["expert_output"]["items"][0] != second["expert_output"]["items"][0]
    assert first["expert_output"]["items"][0] not in second["expert_output"]["items"]
    greetings = ("hello", "hi", "hey there", "hello again", "hm", "hi again", "so?", "well", "ok")
    asked = [run(g, text, thread="q")["response"] for text in greetings]
    assert len(set(asked)) == len(asked)  # the elicitor never repeats a question, also once every attribute was asked
    assert asked[-1].startswith("I think I know what you like")  # four attributes, four open questions, then an offer


def test_titles_the_linker_skips_are_not_recommended_back(experts, real_root):
    """Items the conversation named in forms the entity linker skips (a lower-case title, a number, a
    ten-word title, a short title mid-sentence, the second item of a title the linker resolves to the
    first: "X-Men" and "X-Men (2000)") are not offered; a sentence that opens with "It" or a lower-case
    "up" does not hide "It" or "Up"."""
    named = ["Caddyshack (1980)", "300 (2007)", "The Lord of the Rings: The Fellowship of the Ring (2001)", "Up (2009)", "X-Men"]
    ranking = [*named, "It (2017)", "Heat (1995)"]
    tools = [t for t in experts if t.metadata["subtask"] != RECOMMENDATION] + [fixed_recommender("fixed_rec", ranking)]
    g = graph_with(fake_llm(), tools, real_root, manager="rule")
    said = (
        "caddyshack is a classic, I like 300, the lord of the rings the fellowship of the ring and Up. I watch X-Men movies. Recommend one?"
    )
    out = run(g, said, thread="named")
    assert out["subtask"]["name"] == RECOMMENDATION
    assert out["expert_output"]["items"][:2] == ["It (2017)", "Heat (1995)"]
    out = run(g, "It was fun, I grew up with Heathers (1988). Recommend a movie like it?", thread="plain")
    assert out["subtask"]["name"] == RECOMMENDATION
    assert out["expert_output"]["items"] == ranking


def test_dead_remote_expert_falls_back_to_a_local_one_and_says_so(experts, real_root):
    with ExpertServer(experts) as server:
        remote = remote_experts(server.url)
    recommender = next(t for t in experts if t.name == "popularity_recommender")
    local = recommender.model_copy(update={"name": "local_popularity"})
    g = graph_with(fake_llm("You might like it."), [*remote, local], real_root, manager="rule")
    out = run(g, "I loved The Shining (1980), something like it?")  # the server is gone
    assert out["subtask"]["name"] == "recommendation"
    exe = next(r for r in out["trajectory"] if r["stage"] == "execution")
    assert exe["fallback"] is True and "unreachable" in exe["error"] and exe["parsed"] == "local_popularity"
    assert out["expert"] == "local_popularity" and out["expert_output"]["items"]
    assert "unavailable right now; local_popularity answered instead" in out["response"]
    assert out["expert_output"]["items"][0].split(" (")[0] in out["response"]


def test_recommendation_only_runs_skip_the_llm(experts, real_root):
    from agent.context import Context

    llm = fake_llm("never used")
    g = graph_with(llm, experts, real_root, manager="rule")
    out = g.invoke({"messages": [HumanMessage("I loved The Shining (1980), something like it?")]}, {"configurable": {"thread_id": "r"}},
                   context=Context(generate=False))  # fmt: skip
    assert out["subtask"]["name"] == "recommendation" and out["expert_output"]["items"]
    assert llm.prompts == []  # no LLM call at all: rule decisions, template answer
    assert out["trajectory"][-1]["method"] == "skipped" and out["expert_output"]["items"][0].split(" (")[0] in out["response"]


def test_a_sentence_naming_a_title_that_is_no_item_is_dropped(experts, real_root):
    extra = fixed_recommender("fixed_rec", ["Heat (1995)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    said = "Heat (1995) is tense. You can also enjoy Iron Man (2009)! Pacino is great."  # Iron Man is from 2008
    out = run(graph_with(fake_llm('{"name": "recommendation"}', said), tools, real_root), "something with Al Pacino please")
    assert out["response"] == "Heat (1995) is tense. Pacino is great."
    rec = out["trajectory"][-1]
    assert not rec["fallback"] and "Iron Man (2009)" in rec["error"]
    real = "Heat (1995) is tense. You can also enjoy Iron Man (2008)!"  # a real title no expert gave goes too
    out = run(graph_with(fake_llm('{"name": "recommendation"}', real), tools, real_root), "something with Al Pacino please")
    assert out["response"] == "Heat (1995) is tense." and "does not support" in out["trajectory"][-1]["error"]


def test_a_sentence_claiming_what_no_expert_said_is_dropped_and_counted(experts, real_root):
    """ "You can find it on Netflix!": the summary supports no streaming service, price or award, so the
    user never reads the sentence; the grounding record of the reply is clean."""
    extra = fixed_recommender("fixed_rec", ["Heat (1995)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    said = "Heat (1995) is tense. You can find it on Netflix! It won an Oscar. It costs $5."
    out = run(graph_with(fake_llm('{"name": "recommendation"}', said), tools, real_root), "something with Al Pacino please")
    assert out["response"] == "Heat (1995) is tense."
    rec = out["trajectory"][-1]
    assert "3 sentence(s)" in rec["error"] and not rec["grounding"]["claims"]
    everything = "You can find it on Netflix!"  # nothing is left that names the item: the template answers
    out = run(graph_with(fake_llm('{"name": "recommendation"}', everything), tools, real_root), "something with Al Pacino please")
    assert out["response"].startswith("You might like Heat (1995)") and out["trajectory"][-1]["fallback"]


def test_the_reply_streams_only_what_the_grounding_check_keeps(experts, real_root):
    """The LLM's own tokens never reach a client (``nostream``): the reply streams as ``custom`` events
    of the checked text, so "You can find it on Netflix!" is never shown, not even before it is dropped."""
    from langchain_core.messages import AIMessageChunk

    extra = fixed_recommender("fixed_rec", ["Heat (1995)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    said = "Heat (1995) is tense. You can find it on Netflix! It has Al Pacino in it. Bye"
    g = graph_with(fake_llm('{"name": "recommendation"}', said), tools, real_root)
    replies, leaked = [], []
    turn = {"messages": [HumanMessage("something with Al Pacino please")]}
    for mode, payload in g.stream(turn, {"configurable": {"thread_id": "s"}}, context=CTX, stream_mode=["custom", "messages"]):
        if mode == "custom":
            replies.append(payload["reply"])
        elif payload[1].get("langgraph_node") == "respond" and isinstance(payload[0], AIMessageChunk):
            leaked.append(payload[0].content)
    final = g.get_state({"configurable": {"thread_id": "s"}}).values["response"]
    assert not leaked and replies and replies[-1] == final
    assert not any("Netflix" in r for r in replies)


def test_an_attribute_asked_long_ago_is_not_asked_again(experts, real_root):
    from itertools import cycle

    from agent.boundary import MESSAGES_WINDOW
    from tests.conftest import RecordingFake

    llm = RecordingFake(messages=cycle([AIMessage("")]), prompts=[])
    g = graph_with(llm, experts, real_root, manager="rule")
    first = run(g, "hello", thread="long")
    assert first["subtask"]["name"] == ELICITATION
    attribute = first["expert_output"]["attribute"]
    for _ in range(MESSAGES_WINDOW // 2 + 1):  # detail questions push the first question out of the window
        assert run(g, "Who directed The Shining (1980)?", thread="long")["subtask"]["name"] == DETAIL_SEARCH
    state = g.get_state({"configurable": {"thread_id": "long"}}).values
    assert first["response"] not in [m.content for m in state["messages"]]  # the dialogue no longer shows it
    later = run(g, "I don't like The Shining (1980) after all.", thread="long")  # no liked item left: elicit again
    assert later["subtask"]["name"] == ELICITATION and later["expert_output"]["attribute"] != attribute
    assert later["asked"] == [attribute, later["expert_output"]["attribute"]]


def test_a_resumed_thread_keeps_the_elicited_preferences_and_the_questions_asked(experts, real_root, tmp_path):
    from itertools import cycle

    from agent.memory import open_checkpointer
    from tests.conftest import RecordingFake

    llm = RecordingFake(messages=cycle([AIMessage("")]), prompts=[])
    with open_checkpointer(tmp_path / "chat.sqlite") as saver:
        first = run(graph_with(llm, experts, real_root, manager="rule", checkpointer=saver), "hello, I hate horror movies", thread="r")
    with open_checkpointer(tmp_path / "chat.sqlite") as saver:  # a new process, the same thread
        later = run(graph_with(llm, experts, real_root, manager="rule", checkpointer=saver), "no idea, you tell me", thread="r")
    assert first["subtask"]["name"] == later["subtask"]["name"] == ELICITATION
    assert "horror" in later["expert_output"]["preferences"]["disliked"]  # said in the first session
    assert later["expert_output"]["attribute"] != first["expert_output"]["attribute"]
    assert later["asked"] == [first["expert_output"]["attribute"], later["expert_output"]["attribute"]]


def test_a_detail_answer_is_not_repeated_unless_the_user_asks_for_it_again(experts, real_root):
    """Asked again, the detail is answered again; detected again when the user asked nothing (as the
    trained manager did after a rejection), the graph does not repeat its answer word for word but takes
    the next choice, and the trajectory says why."""
    from itertools import cycle

    from tests.conftest import RecordingFake

    rule = graph_with(RecordingFake(messages=cycle([AIMessage("")]), prompts=[]), experts, real_root, manager="rule")
    first = run(rule, "Who directed The Shining (1980)?", thread="d")
    again = run(rule, "Sorry, who directed The Shining (1980) again?", thread="d")
    assert first["subtask"]["name"] == again["subtask"]["name"] == DETAIL_SEARCH and "Stanley Kubrick" in again["response"]
    assert again["results"][-1]["args"] == {"item name": "The Shining (1980)", "item attribute": "director"}
    always = RecordingFake(messages=cycle([AIMessage('{"name": "item detail search", "id": "popularity_recommender"}')]), prompts=[])
    g = graph_with(always, experts, real_root)  # a manager that always detects a detail question
    told = run(g, "Who directed The Shining (1980)?", thread="m")
    unasked = run(g, "Maybe something directed by Steven Spielberg?", thread="m")  # a liking, not a question about it
    assert told["subtask"]["name"] == DETAIL_SEARCH and unasked["subtask"]["name"] == RECOMMENDATION
    assert unasked["response"] != told["response"]
    assert "answered earlier in this conversation and the user did not ask again" in unasked["trajectory"][0]["error"]


def test_an_explanation_is_not_repeated_for_a_question_about_an_attribute(experts, real_root):
    """A question about an attribute of "it" asks a detail, not the explanation again: a manager that
    detects explanation on it does not get the same explanation word for word (the shipped ReDial head
    did so on "What genre is it?"); a second "why" is still answered."""
    from itertools import cycle

    from tests.conftest import RecordingFake

    always = RecordingFake(messages=cycle([AIMessage('{"name": "explanation", "id": "popularity_recommender"}')]), prompts=[])
    g = graph_with(always, experts, real_root)  # a manager that always detects an explanation
    told = run(g, "I loved The Shining (1980). Why would I like It (2017)?", thread="x")
    genre = run(g, "What genre is it?", thread="x")
    assert told["subtask"]["name"] == EXPLANATION and genre["subtask"]["name"] != EXPLANATION
    assert genre["response"] != told["response"]
    assert "answered earlier in this conversation and the user did not ask again" in genre["trajectory"][0]["error"]
    again = run(g, "but why that one?", thread="x")
    assert again["subtask"]["name"] == EXPLANATION and not again["trajectory"][0].get("error")


def test_a_trained_manager_blends_the_recommenders_by_its_matching_distribution(real_root, redial_env):
    """Execution fuses the rankings of the experts the head's matching distribution shares the turn
    between: an item both rank 11th comes first; a blended expert that fails is left out and named;
    the next turn does not offer the item again; at temperature 0 the argmax expert alone answers."""
    import torch

    from agent.manager import STATE_FEATURES, ManagerHead
    from tests.conftest import RecordingFake
    from tools.subtasks import SUBTASKS as NAMES

    class HiddenFake(RecordingFake):
        model_name: str = "fake-hidden"

        def hidden_features(self, texts, batch_size=8, max_tokens=80):
            return torch.zeros(len(texts), 4)

    titles = sorted(redial_env.linker.names.values())[:21]
    shared, own_a, own_b = titles[0], titles[1:11], titles[11:21]

    def broken(category: str, dialogue_context: str) -> dict:
        """Fails on every call.

        Args:
            category: The item category.
            dialogue_context: The dialogue so far.
        """
        raise RuntimeError("model file missing")

    tools = [fixed_recommender("rec_a", [*own_a, shared]), fixed_recommender("rec_b", [*own_b, shared]),
             expert_tool(broken, RECOMMENDATION, name="rec_broken")]  # fmt: skip
    head = ManagerHead(4, len(STATE_FEATURES), ["rec_a", "rec_b", "rec_broken"], hidden=8, dropout=0.0).eval()
    with torch.no_grad():
        head.detect.bias[list(NAMES).index(RECOMMENDATION)] = 50.0
        head.match.weight.zero_()
        head.match.bias.copy_(torch.log(torch.tensor([0.5, 0.3, 0.2])))
        head.blend_temperature.fill_(1.0)
    llm = HiddenFake(messages=iter([AIMessage("Here is one."), AIMessage("Another one.")]), prompts=[])
    g = build_crs_graph(model=llm, tools=tools, checkpointer=InMemorySaver(), data_root=str(real_root), manager=head)
    out = run(g, "Can you recommend a movie?", thread="blend")
    assert out["expert"] == "rec_a"
    assert out["blend"] == {"rec_a": 0.5, "rec_b": 0.3, "rec_broken": 0.2}
    assert out["expert_output"]["items"][0] == shared  # 0.5/71 + 0.3/71 beats rec_a's first, 0.5/61
    assert out["expert_output"]["items"][1:3] == own_a[:2]
    exe = next(r for r in out["trajectory"] if r["stage"] == "execution")
    assert exe["blend"] == {"rec_a": 0.5, "rec_b": 0.3} and "rec_broken: RuntimeError: model file missing" in exe["error"]
    assert exe["fallback"] is False
    out = run(g, "Something else?", thread="blend")
    assert shared not in out["expert_output"]["items"]  # offered before
    with torch.no_grad():
        head.blend_temperature.fill_(0.0)
    llm = HiddenFake(messages=iter([AIMessage("Here is one.")]), prompts=[])
    g = build_crs_graph(model=llm, tools=tools, checkpointer=InMemorySaver(), data_root=str(real_root), manager=head)
    out = run(g, "Can you recommend a movie?", thread="pick")
    assert out["blend"] is None and out["expert_output"]["items"][0] == own_a[0]
    assert "blend" not in next(r for r in out["trajectory"] if r["stage"] == "execution")


def test_the_trained_manager_reads_a_recommendation_as_it_was_trained_to(experts, real_root):
    """The reply adds its reason for the user; the next turn's decision reads the reply as the sentence the
    head was trained on ("You might like X."), so what the reply adds does not move the next decision."""
    from agent.dialogue import DECISION_VIEW, decision_dialogue

    extra = fixed_recommender("fixed_rec", ["The Godfather (1972)"])
    tools = [t for t in experts if t.name != "popularity_recommender"] + [extra]
    g = graph_with(fake_llm('{"name": "recommendation"}', ""), tools, real_root)
    out = run(g, "I loved Heat (1995), anything like it?", thread="v")
    reply = out["messages"][-1]
    assert reply.content == "You might like The Godfather (1972). Al Pacino stars in both The Godfather (1972) and Heat (1995)."
    assert reply.response_metadata[DECISION_VIEW] == "You might like The Godfather (1972)."
    assert decision_dialogue(out)[-1] == ("recommender", "You might like The Godfather (1972).")


def test_a_wish_stated_this_turn_is_answered_not_met_with_a_question(experts, real_root):
    """The manager asks where the user just asked for something the recommenders honour ("Something
    from the 2000s?"): the graph recommends instead, and says why in the record; a turn that asks for
    nothing new keeps the manager's question."""
    asks = '{"name": "user preference elicitation"}'
    g = graph_with(
        fake_llm(asks, '{"id": "preference_elicitor"}', "", asks, '{"id": "preference_elicitor"}', ""), experts, real_root, manager="prompt"
    )
    out = run(g, "Something from the 2000s?", thread="w")
    assert out["subtask"]["name"] == "recommendation" and "asked for the 2000s" in out["trajectory"][0]["error"]
    top = out["expert_output"]["items"][0]
    assert 2000 <= int(top[-5:-1]) <= 2009 and "a 2000s movie, as you asked" in out["response"]
    out = run(g, "hello there", thread="h")
    assert out["subtask"]["name"] == "user preference elicitation"
