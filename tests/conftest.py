"""Shared fixtures: the real data root (skipped with a reason when absent) and isolated homes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult

from agent.server import free_port  # noqa: F401 - tests import it from here
from crsdata.paths import DataError, SetupError, data_root

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[1]
SERVER_MAX_REQUEST_BYTES = 32 * 1024
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _publish_elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands that publish their tables (``crsdata.publish``) write to a temporary folder, never to docs/."""
    folder = tmp_path_factory.mktemp("published")
    old = os.environ.get("LLMCRS_PUBLISH_DIR")
    os.environ["LLMCRS_PUBLISH_DIR"] = str(folder)
    yield
    if old is None:
        os.environ.pop("LLMCRS_PUBLISH_DIR", None)
    else:
        os.environ["LLMCRS_PUBLISH_DIR"] = old


#: Fixtures that read the real corpora or the embedded model: a test using any of them, even through
#: another fixture, is marked ``data`` (``make test-fast`` runs the rest, on tiny fixtures only).
DATA_FIXTURES = frozenset({"real_root", "embedded"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:  # noqa: ARG001
    """Mark every test whose fixture closure reaches :data:`DATA_FIXTURES` as ``data``."""
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)


def skip_or_fail(reason: str) -> None:
    """Skip with a reason; in CI (``CI=true``) a missing model or data set is a failure, not a skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: end-to-end tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The real CRS data (../shared/data or $LLMCRS_DATA_DIR); skips when absent (fails in CI)."""
    try:
        root = data_root()
    except DataError as exc:
        skip_or_fail(f"real CRS data absent: {exc}")
    if not (root / "redial").is_dir():
        skip_or_fail(f"real CRS data absent: {root} has no redial/")
    return root


@pytest.fixture(scope="session")
def embedded():
    """The embedded default chat model (SmolLM2-135M-Instruct); skips when absent (fails in CI)."""
    from agent.llm import ModelError, load_chat_model

    try:
        return load_chat_model()
    except ModelError as exc:
        skip_or_fail(f"embedded default not installed: {exc}")


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary directory for files built once per session."""
    return tmp_path_factory.mktemp("llmcrs_session")


@pytest.fixture(scope="session")
def catalog(real_root: Path, session_home: Path):
    """The real catalog built once per session into a temporary SQLite file."""
    from crsdata.catalog import Catalog

    cat = Catalog(f"sqlite:///{session_home / 'catalog.sqlite'}", real_root)
    cat.build(["redial", "opendialkg"])
    return cat


class FakeChat(GenericFakeChatModel):
    """A fake chat model that replies with the given texts in order; ``bind_tools`` returns itself."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> FakeChat:  # noqa: ARG002
        return self


class RecordingFake(FakeChat):
    """A :class:`FakeChat` that records every prompt it was sent."""

    prompts: list[str] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append(str(messages[-1].content) if len(messages) == 1 else "\n".join(str(m.content) for m in messages))
        return super()._generate(messages, *args, **kwargs)


def fake_llm(*replies: str) -> RecordingFake:
    """A fresh recording fake with its own prompt list."""
    return RecordingFake(messages=iter([AIMessage(r) for r in replies]), prompts=[])


@pytest.fixture(scope="session")
def redial_env(real_root: Path):
    """Experts' environment (catalog, linker, popularity) of the real ReDial data."""
    from tools.env import expert_env

    return expert_env("redial", str(real_root))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<eos>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny Llama (2 layers, 32 dims) and a byte-level BPE tokenizer trained here, saved as a
    transformers folder: the real loading path with no download."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    import prompts

    corpus = [prompts.template(n) for n in prompts.TEMPLATES] + [
        "User: I like horror movies. Assistant: You might like The Shining (1980).",
        '{"name": "recommendation"} {"id": "popularity_recommender"} explanation item detail search user preference elicitation',
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=4096, eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the tiny offline model (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_llm"))


def server_env(real_root: Path, folder: Path) -> dict[str, str]:
    """The environment of a test server: the real data, no tracing, its checkpoints in ``folder``."""
    return {**os.environ, "LLMCRS_DATA_DIR": str(real_root), "LANGSMITH_TRACING": "false",
            "LLMCRS_SERVER_CHECKPOINTER": str(folder / "server.sqlite")}  # fmt: skip


@pytest.fixture(scope="session")
def server(real_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m agent serve`` (the LangGraph server on langgraph.json) on a free loopback port; its URL."""
    from agent.server import running_server

    try:
        import langgraph_api  # noqa: F401
    except ImportError:
        skip_or_fail("the LangGraph server is not installed (pip install -e '.[studio]')")
    folder = tmp_path_factory.mktemp("server")
    env = server_env(real_root, folder)
    try:
        with running_server(folder / "server.log", "--max-request-bytes", str(SERVER_MAX_REQUEST_BYTES), env=env) as served:
            yield served.url
    except SetupError as exc:  # the server exited: not installed or not startable here
        skip_or_fail(str(exc))
    except TimeoutError as exc:
        pytest.fail(str(exc))
