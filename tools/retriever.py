"""Text retriever: the dialogue's recent turns embedded with all-MiniLM-L6-v2 and matched against
item descriptions from the catalog in a FAISS index (:mod:`tools.retrieval`). No training; the
"train" step builds and caches the index."""

from __future__ import annotations

import time
from typing import Any

from langchain_core.tools import BaseTool

from tools.base import recommender_tool
from tools.dialogue import parse_dialogue
from tools.env import ExpertEnv, item_index
from tools.learned import evaluate_ranker, floor_evidence, load_checkpoint, save_checkpoint, split_samples

NAME = "retriever"
RECENT_TURNS = 4


def rank(env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """Items closest to the most recent turns (the embedder reads 128 tokens), without those already named."""
    recent = " ".join(t for _, t in parse_dialogue(dialogue_context)[-RECENT_TURNS:]) or dialogue_context
    exclude = set(env.mentioned_items(dialogue_context))
    return [n for n, _ in item_index(env).search(recent, top_k, exclude)]


def train(env: ExpertEnv, limit: int = 300) -> dict[str, Any]:
    """Build the index and measure validation HIT@10 (recorded in the tool's description)."""
    start = time.perf_counter()
    item_index(env)
    metrics = evaluate_ranker(lambda text, k: rank(env, text, k), split_samples(env, "valid")[:limit])
    result: dict[str, Any] = {"valid_hit@10": metrics["hit@10"], "train_seconds": time.perf_counter() - start}
    result["floor"] = floor_evidence(env, lambda text, k: rank(env, text, k))
    save_checkpoint(env.dataset, NAME, {}, {"embedder": "all-MiniLM-L6-v2", "recent_turns": RECENT_TURNS}, result)
    return result


DOC = """Text retriever: embeds the latest dialogue turns with a sentence-transformer (all-MiniLM-L6-v2)
and returns the {dataset} items whose descriptions (title, genres, director, cast, plot) are closest.
Strong for descriptive requests ("a funny heist movie set in space") that name no item; weaker on
collaborative signal. English. Measured: validation HIT@10 {hit:.3f}.
"""


def make_text_retriever(env: ExpertEnv) -> BaseTool:
    """The retriever expert of ``env``'s dataset as a tool (needs ``python -m tools.train retriever``)."""
    _, _, metrics = load_checkpoint(env.dataset, NAME)

    return recommender_tool(
        "text_retriever",
        lambda text, k: rank(env, text, k),
        DOC.format(dataset=env.dataset, hit=metrics["valid_hit@10"]),
        "Matching your description: {items}.",
    )
