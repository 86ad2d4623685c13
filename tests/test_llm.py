"""The local transformers chat model through the real loading path, on a tiny model built offline."""

from __future__ import annotations

import pytest
import torch
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.graph import build_crs_graph
from agent.llm import LocalHFChatModel, ModelError, load_chat_model
from tools import default_experts

pytestmark = pytest.mark.integration
MSGS = [HumanMessage("Pick the sub-task for: I want a scary movie.")]
OPTIONS = ["user preference elicitation", "recommendation", "explanation", "item detail search"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    model = load_chat_model(str(tiny_model_dir))
    assert isinstance(model, LocalHFChatModel)
    return model


@pytest.mark.parametrize(
    ("options", "prefix", "suffix"),
    [(OPTIONS, '{"name": "', '"}'), ([" a", *OPTIONS], "", "")],  # the second has a one-token option (batched rows of unequal length)
)
def test_choice_logprobs_match_a_full_recomputation(tiny, options, prefix, suffix):
    with torch.no_grad():
        got = tiny.choice_logprobs(MSGS, options, prefix=prefix, suffix=suffix)
        means = []
        for opt in options:
            n = len(tiny._ids(opt + suffix))
            means.append(tiny.completion_logprob(MSGS, opt + suffix, prefix=prefix) / n)
        want = torch.log_softmax(torch.stack(means), dim=0)
    assert torch.allclose(got, want, atol=1e-4)
    assert torch.isclose(got.exp().sum(), torch.tensor(1.0))


def test_choice_logprobs_carry_gradients(tiny):
    lp = tiny.choice_logprobs(MSGS, OPTIONS[:2])
    lp[0].backward()
    grads = [p.grad for p in tiny.hf_model.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    tiny.hf_model.zero_grad()


def test_generation_streaming_and_prefix(tiny):
    text = tiny.invoke(MSGS, max_new_tokens=5).content
    assert isinstance(text, str)
    chunks = list(tiny.stream(MSGS, max_new_tokens=5, response_prefix="You might like X. "))
    assert chunks[0].content == "You might like X. "
    with pytest.raises(ValueError, match="at least one option"):
        tiny.choice_logprobs(MSGS, [])


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_chat_model(str(tmp_path / "no-model"))


def test_graph_runs_on_the_tiny_model_with_constrained_decisions(tiny, real_root):
    g = build_crs_graph(
        model=tiny,
        tools=default_experts("redial", str(real_root)),
        checkpointer=InMemorySaver(),
        data_root=str(real_root),
        n_demos=1,
        manager="prompt",
    )
    out = g.invoke(
        {"messages": [HumanMessage("I want a scary movie like The Shining (1980)")]},
        {"configurable": {"thread_id": "x"}},
        context=Context(max_new_tokens=4),
    )
    det = out["trajectory"][0]
    assert det["method"] == "constrained" and det["options"] == OPTIONS
    assert sum(torch.tensor(det["logprobs"]).exp()) == pytest.approx(1.0, abs=1e-4)
    assert out["subtask"]["name"] == det["parsed"]
    assert out["response"]
    assert [r["stage"] for r in out["trajectory"]] == ["detection", "matching", "execution", "response"]


def test_prefix_cache_gives_the_same_scores(tiny_model_dir):
    cached = load_chat_model(str(tiny_model_dir))
    fresh = LocalHFChatModel(hf_model=cached.hf_model, hf_tokenizer=cached.hf_tokenizer, prefix_cache_size=0)
    shared = "Long shared instructions about sub-tasks and schema. " * 5
    with torch.no_grad():
        for tail in ("User: I want a scary movie.", "User: Who directed it?", "User: Who directed it?", "User: Why?"):
            msgs = [HumanMessage(shared + tail)]
            assert torch.allclose(cached.choice_logprobs(msgs, OPTIONS), fresh.choice_logprobs(msgs, OPTIONS), atol=1e-5)
    assert 1 <= len(cached._prefix_cache) <= cached.prefix_cache_size


def test_sampled_decisions_explore(tiny):
    from agent.decide import decide

    torch.manual_seed(0)
    tiny.sample_choices = True
    try:
        picks = {decide(tiny, "detection", "Pick one.", OPTIONS, "name", lambda: OPTIONS[0])[0] for _ in range(30)}
    finally:
        tiny.sample_choices = False
    assert len(picks) > 1
    greedy = {decide(tiny, "detection", "Pick one.", OPTIONS, "name", lambda: OPTIONS[0])[0] for _ in range(3)}
    assert len(greedy) == 1


@pytest.mark.parametrize("offline", ["1", None])
def test_unloadable_model_error_names_cause_and_fix(monkeypatch, offline):
    import transformers

    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to the hub")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", refuse)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from agent.llm import load_hf

    with pytest.raises(ModelError) as err:
        load_hf("nobody/no-such-model")
    text = str(err.value)
    assert "nobody/no-such-model" in text and "couldn't connect" in text and "local model folder" in text
    assert ("HF_HUB_OFFLINE=1 is set" in text) == bool(offline)


def test_openai_compatible_endpoint_is_a_configuration_change(real_root):
    """`openai:<model>@<url>` (vLLM, TGI, ...) against a local fake server: the graph's LLM calls go there."""
    import json
    import re
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pytest.importorskip("langchain_openai", reason="pip install -e '.[openai]'")
    seen: list[dict] = []

    class Fake(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):  # noqa: N802
            seen.append({"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            prompt = seen[-1]["messages"][-1]["content"]
            item = re.search(r"Expert output:[^:]*: (.+?\(\d{4}\))", prompt)  # answer like a faithful LLM
            text = f"{item.group(1) if item else 'Something'} has the same creeping dread."
            body = json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": "fake-model",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
                               "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        g = build_crs_graph(model=f"openai:fake-model@{url}", tools=default_experts("redial", str(real_root), learned=False),
                            checkpointer=InMemorySaver(), data_root=str(real_root), manager="rule")  # fmt: skip
        out = g.invoke({"messages": [HumanMessage("I loved The Shining (1980), something like it?")]}, {"configurable": {"thread_id": "o"}})
    finally:
        server.shutdown()
    assert seen and seen[-1]["path"] == "/v1/chat/completions" and seen[-1]["model"] == "fake-model"
    assert seen[-1]["max_tokens"] == seen[-1]["max_completion_tokens"] > 0  # bounded on self-hosted servers too
    assert "creeping dread" in out["response"] and not out["trajectory"][-1].get("fallback")


@pytest.mark.parametrize("endpoint", ["down", "hung"])
def test_dead_llm_endpoint_answers_from_the_expert(real_root, monkeypatch, endpoint):
    """An OpenAI-compatible endpoint that is down, or accepts and never answers: the turn still answers
    (the template from the expert output) within the timeout."""
    import socket
    import time

    pytest.importorskip("langchain_openai", reason="pip install -e '.[openai]'")
    monkeypatch.setenv("LLMCRS_LLM_TIMEOUT", "1")
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    if endpoint == "hung":
        hung.listen(8)  # connections are accepted by the kernel, never answered
    port = hung.getsockname()[1]
    if endpoint == "down":
        hung.close()
    try:
        g = build_crs_graph(model=f"openai:gone@http://127.0.0.1:{port}/v1", tools=default_experts("redial", str(real_root), learned=False),
                            checkpointer=InMemorySaver(), data_root=str(real_root), manager="rule")  # fmt: skip
        start = time.perf_counter()
        out = g.invoke({"messages": [HumanMessage("I loved The Shining (1980), something like it?")]}, {"configurable": {"thread_id": "d"}})
        seconds = time.perf_counter() - start
    finally:
        hung.close()
    response = out["trajectory"][-1]
    assert response["fallback"] and ("Connection" in response["error"] or "Timeout" in response["error"]), response
    assert out["expert_output"]["items"][0].split(" (")[0] in out["response"]
    assert seconds < 30  # one retry within the 1 s timeout, not the SDK's default 10 minutes


def test_a_reply_adapter_changes_tuned_replies_only(tiny_model_dir, tmp_path):
    """The reply adapter is injected into the very model the manager reads (one model in memory), and only a
    tuned generation reads it: the decisions' scores and hidden states are identical before and after it is
    attached, and after a tuned reply; with its layers on, the model's outputs do change."""
    from peft import LoraConfig, get_peft_model

    from agent.llm import attach_reply_adapter, load_hf

    donor, _ = load_hf(tiny_model_dir)  # an adapter whose B is not zero: it changes what the model computes
    get_peft_model(donor, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).save_pretrained(tmp_path / "adapter")
    model, tok = load_hf(tiny_model_dir)
    chat = LocalHFChatModel(hf_model=model, hf_tokenizer=tok, prefix_cache_size=0)
    ids = torch.tensor([chat._ids("User: a scary movie?")])

    def decisions() -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return (
                chat.choice_logprobs(MSGS, OPTIONS),
                chat.hidden_features(["User: a scary movie?"]),
                chat.completion_logprob(MSGS, "recommendation"),
            )

    before, plain = decisions(), model(input_ids=ids).logits.detach()
    attach_reply_adapter(model, tmp_path / "adapter")
    assert chat.has_reply_adapter and sum("lora_" in n for n, _ in model.named_parameters()) > 0
    with torch.no_grad(), chat._weights(tuned=True):
        tuned = model(input_ids=ids).logits
    assert not torch.allclose(tuned, plain, atol=1e-3)  # the adapter is live when a tuned reply asks for it
    for a, b in zip(before, decisions(), strict=True):
        assert torch.equal(a, b)
    assert chat.invoke(MSGS, max_new_tokens=6, tuned=True).content != chat.invoke(MSGS, max_new_tokens=6).content
    for a, b in zip(before, decisions(), strict=True):  # a tuned reply leaves the adapter off again
        assert torch.equal(a, b)


def test_tuned_reply_reads_the_compact_prompt_and_falls_back_to_the_grounded_template(tiny_model_dir, tmp_path, real_root):
    """With a reply adapter, the response stage writes the reply from the compact reply prompt; the grounding
    check still applies, and a reply that loses the recommended item gives way to the grounded template.
    ``Context(tuned_reply=False)`` (the default) answers as before the adapter (prefix forcing)."""
    from peft import LoraConfig, get_peft_model

    from agent.dialogue import decision_dialogue
    from agent.llm import attach_reply_adapter, load_hf
    from agent.respond import recommendation_sentence, template_response

    donor, _ = load_hf(tiny_model_dir)
    get_peft_model(donor, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)).save_pretrained(tmp_path / "adapter")
    model, tok = load_hf(tiny_model_dir)
    attach_reply_adapter(model, tmp_path / "adapter")
    chat = LocalHFChatModel(hf_model=model, hf_tokenizer=tok)
    g = build_crs_graph(
        model=chat, tools=default_experts("redial", str(real_root)), checkpointer=InMemorySaver(), data_root=str(real_root), manager="rule"
    )
    turn = {"messages": [HumanMessage("I want a scary movie like The Shining (1980)")]}
    out = g.invoke(turn, {"configurable": {"thread_id": "tuned"}}, context=Context(max_new_tokens=8, tuned_reply=True))
    rec = out["trajectory"][-1]
    assert out["subtask"]["name"] == "recommendation" and rec["method"] == "tuned"
    assert rec["prompt"].startswith("Dialogue:\nUser: I want a scary movie") and "Found: " in rec["prompt"] and not rec["prefix"]
    top = out["expert_output"]["items"][0]
    assert top.split(" (")[0] in out["response"] and not rec["grounding"]["claims"]
    if rec["fallback"]:  # a random adapter's reply rarely names the item: the grounded template answers
        assert out["response"] == template_response(out)
    said = {k: v for k, v in out["expert_output"].items() if k not in ("reason", "about")}
    assert decision_dialogue(out)[-1] == (
        "recommender",
        recommendation_sentence(said),
    )  # the next decision reads what the head was trained on
    plain = g.invoke(turn, {"configurable": {"thread_id": "plain"}}, context=Context(max_new_tokens=8, tuned_reply=False))
    assert plain["trajectory"][-1]["method"] == "generated" and plain["trajectory"][-1]["prefix"].startswith("You might like")
