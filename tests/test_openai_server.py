"""Bring your own LLM: a real OpenAI-compatible server (``transformers serve``, the ``transformers[serving]``
extra) on a loopback port, serving the embedded model from its converted local folder with no hub access,
and the graph, ``eval run`` and ``eval simulate`` talking to it through ``--model openai:<m>@<url>``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from tests.conftest import free_port, skip_or_fail

pytestmark = pytest.mark.e2e


class Served:
    """A running ``transformers serve``: its model spec for llmcrs, and how many chat completions it answered."""

    def __init__(self, folder: Path, log: Path) -> None:
        self.folder, self.log, self.port = folder, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def spec(self) -> str:
        return f"openai:{self.folder}@http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
        if exe is None:
            skip_or_fail("`transformers serve` is not installed (pip install -e '.[dev]' brings transformers[serving])")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port), str(self.folder)],
                                         stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"transformers serve exited: {self.log.read_text()[-2000:]}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(1)
        raise AssertionError(f"transformers serve did not answer in 180 s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def completions(self) -> int:
        return self.log.read_text(errors="replace").count('"POST /v1/chat/completions HTTP/1.1" 200')


@pytest.fixture(scope="module")
def served(embedded, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from agent.llm import embedded_model_dir

    server = Served(embedded_model_dir(), tmp_path_factory.mktemp("served") / "serve.log")
    server.start()
    yield server
    server.stop()


def _turn(graph, text: str, thread: str) -> dict:
    return graph.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}})


def test_a_three_turn_conversation_with_the_prompted_manager_goes_through_the_server(served, real_root):
    from agent.graph import build_crs_graph

    graph = build_crs_graph(model=served.spec, manager="prompt", dataset="redial", checkpointer=InMemorySaver())
    before = served.completions()
    for i, text in enumerate(["Any horror movies from the 80s?", "Who directed it?", "Something more recent please."]):
        out = _turn(graph, text, "byo")
        assert out["response"] and not out.get("error")
        detection = next(r for r in out["trajectory"] if r["stage"] == "detection")
        # the server answered (a 135M model may not write the JSON asked for: then the rule decides, which is recorded)
        assert detection["method"] == "parsed" and "Connection" not in (detection.get("error") or "")
        assert len(out["messages"]) == 2 * (i + 1)
    assert served.completions() - before >= 6  # detection and the response at least, every turn


def test_eval_run_and_simulate_evaluate_the_served_model(served, real_root, tmp_path):
    from eval.__main__ import main as eval_main
    from eval.simulate import main as simulate_main

    common = ["--model", served.spec, "--manager", "prompt", "--dataset", "redial"]
    assert eval_main(["run", *common, "--systems", "full,llm_only", "--limit", "20", "--results_dir", str(tmp_path)]) == 0
    for system in ("full", "llm_only"):
        rows = [json.loads(line) for line in (tmp_path / "redial" / "test" / f"{system}.jsonl").read_text().splitlines()]
        assert len(rows) == 20 and all(r["response"] for r in rows)
        assert all(r["grounding"] is not None for r in rows)  # every generated reply was checked
    assert "unsupported_claim_share" in (tmp_path / "redial" / "test" / "tables.md").read_text()
    before = served.completions()
    assert simulate_main([*common, "--systems", "full", "--dialogues", "5", "--turns", "2", "--results_dir", str(tmp_path)]) == 0
    episodes = (tmp_path / "simulate" / "redial" / "full.jsonl").read_text().splitlines()
    assert len(episodes) == 5 and served.completions() > before


def test_the_langgraph_server_serves_the_endpoint_model(served, real_root, tmp_path):
    """`python -m agent serve --model openai:<m>@<url> --manager prompt`: the LangGraph server's graph talks to
    the endpoint (the same spec as every other command); the default manager on an endpoint is refused."""
    from langgraph_sdk import get_sync_client

    from agent.server import running_server
    from crsdata.paths import SetupError
    from tests.conftest import server_env

    env = server_env(real_root, tmp_path)
    with running_server(tmp_path / "server.log", "--model", served.spec, "--manager", "prompt", env=env) as server:
        client = get_sync_client(url=server.url)
        thread = client.threads.create()["thread_id"]
        before = served.completions()
        for text in ["I loved The Shining (1980). Anything like it?", "Who directed it?"]:
            out = client.runs.wait(thread, "llmcrs", input={"messages": [{"role": "user", "content": text}]})
            assert out["response"] and not out.get("error")
            assert next(r for r in out["trajectory"] if r["stage"] == "detection")["method"] == "parsed"
        assert served.completions() - before >= 4
    refused = running_server(tmp_path / "refused.log", "--model", served.spec, env=env, timeout=120)
    with pytest.raises(SetupError, match="--manager prompt"), refused:  # the graph module refuses to build: the server exits with why
        pass


def test_the_demo_command_talks_to_the_endpoint(served, real_root, capsys):
    from agent.__main__ import main as agent_main

    before = served.completions()
    assert agent_main(["demo", "--model", served.spec, "--manager", "prompt", "--turns", "1"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "4 response" in out and "Connection" not in out
    assert served.completions() - before >= 2  # detection and the response


def test_the_prompted_manager_through_the_endpoint_plays_the_scripted_conversations(served, real_root, tmp_path):
    from eval.scripted import main as scripted_main

    assert scripted_main(["--model", served.spec, "--manager", "prompt", "--conversations", "3", "--results_dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "scripted" / "redial" / "prompt.json").read_text())
    assert result["turns"] == 9 and not any("Connection" in t["error"] for t in result["per_turn"])


def test_a_server_that_stops_mid_conversation_costs_no_turn(served, real_root):
    """The server dies after the first turn: the second is answered from the experts with the failure
    recorded, the thread keeps every message, and once the server is back the conversation goes on."""
    from agent.graph import build_crs_graph

    graph = build_crs_graph(model=served.spec, manager="prompt", dataset="redial", checkpointer=InMemorySaver())
    _turn(graph, "I loved The Shining (1980). Anything like it?", "stop")
    served.stop()
    try:
        out = _turn(graph, "Something from the 90s?", "stop")
        assert out["response"] and len(out["messages"]) == 4
        assert any("Connection" in (r.get("error") or "") for r in out["trajectory"])
    finally:
        served.start()
    out = _turn(graph, "Who directed it?", "stop")
    assert len(out["messages"]) == 6 and out["response"]
    assert "Connection" not in (next(r for r in out["trajectory"] if r["stage"] == "detection").get("error") or "")
