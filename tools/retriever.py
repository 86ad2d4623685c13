"""Text retriever: a bi-encoder fine-tuned from all-MiniLM-L6-v2 on the training split.

The query is the dialogue's last turns with their speakers; an item is its catalog text (title, genres, people, plot; :func:`tools.retrieval.item_text`). Training is
sentence-transformers' trainer with in-batch negatives (``MultipleNegativesRankingLoss``): every
(context, target item) pair of the training split is a positive, the other items of the batch are
the negatives. Items are indexed with FAISS (:mod:`tools.retrieval`), so a query costs one encoder
pass plus an inner-product search.

The fine-tuned model is saved under the expert's checkpoint folder (``model/``) with the catalog's
hash; a checkpoint from another catalog is refused with the command that retrains it.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from crsdata.schema import RecSample
from tools.dialogue import format_turns, parse_dialogue
from tools.env import ExpertEnv, item_index
from tools.learned import (
    CheckpointMissing,
    TrainConfig,
    checkpoint_dir,
    evaluate_ranker,
    floor_evidence,
    learned_tool,
    load_checkpoint,
    save_checkpoint,
    seed_all,
    split_samples,
    train_command,
)
from tools.preferences import stated_first
from tools.retrieval import ItemIndex, item_text, load_encoder

NAME = "retriever"
RECENT_TURNS = 4


def query_text(dialogue_context: str) -> str:
    """What the encoder reads for a dialogue: ``"user: ... recommender: ..."`` over the last turns.

    Appending the liked items and entities the linker finds (``" | liked: A, B"``) scored lower with the
    shipped encoder on INSPIRED validation (HIT@10 .061 against .082), so the query is the turns alone.
    """
    turns = parse_dialogue(dialogue_context)
    return " ".join(f"{role}: {text}" for role, text in turns[-RECENT_TURNS:]) or dialogue_context


def catalog_hash(env: ExpertEnv) -> str:
    """Identifies the item texts a retriever was trained and indexed on."""
    texts = "\n".join(item_text(i) for i in env.catalog.all_items(env.dataset))
    return hashlib.sha256(texts.encode()).hexdigest()[:16]


def training_pairs(env: ExpertEnv, samples: list[RecSample], limit: int | None, seed: int) -> list[tuple[str, str]]:
    """``(query, item text)`` of every target of the samples (shuffled, seeded, capped at ``limit``)."""
    items = {i.name: i for i in env.catalog.all_items(env.dataset)}
    pairs = []
    for s in samples:
        query = query_text(format_turns(s.context))
        pairs += [(query, item_text(items[t])) for t in s.targets if t in items]
    random.Random(seed).shuffle(pairs)
    return pairs[:limit]


def fine_tune(env: ExpertEnv, cfg: TrainConfig, out: Path) -> dict[str, Any]:
    """Fine-tune the shipped encoder on the training split's pairs and save it to ``out``."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    seed_all(cfg.seed)
    pairs = training_pairs(env, split_samples(env, "train"), cfg.max_train_rows, cfg.seed)
    model = load_encoder()  # a fresh copy: the process-wide shipped encoder stays untouched
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out.parent / "trainer"),
        num_train_epochs=cfg.encoder_epochs,
        per_device_train_batch_size=cfg.encoder_batch_size,
        learning_rate=cfg.encoder_lr,
        warmup_steps=0.1,
        batch_sampler="no_duplicates",  # the same item twice in a batch would be its own negative
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=cfg.seed,
        logging_steps=20,
    )
    data = Dataset.from_dict({"anchor": [q for q, _ in pairs], "positive": [p for _, p in pairs]})
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model))
    stats = trainer.train()
    model.save(str(out))
    return {"train_pairs": len(pairs), "train_loss": stats.training_loss}


def trained_index(env: ExpertEnv) -> ItemIndex:
    """The item index of the dataset's fine-tuned retriever (checked once per training run, then cached).

    Raises:
        CheckpointMissing: Nothing trained, or trained on another catalog (names the train command).
    """
    folder = checkpoint_dir(env.dataset, NAME)
    config_file = folder / "config.json"
    key = (env.dataset, str(env.root), config_file.stat().st_mtime_ns if config_file.is_file() else -1)
    if key in _CHECKED:
        return _CHECKED[key]
    _, config, _ = load_checkpoint(env.dataset, NAME)
    if not config.get("fine_tuned") or not (folder / "model").is_dir():
        raise CheckpointMissing(
            f"the {NAME} for {env.dataset} is not fine-tuned (an older checkpoint); retrain with `{train_command(NAME, env.dataset)}`"
        )
    if config.get("catalog") != catalog_hash(env):
        raise CheckpointMissing(
            f"the {NAME} for {env.dataset} was trained on another catalog ({config.get('catalog')}); retrain with `{train_command(NAME, env.dataset)}`"
        )
    _CHECKED[key] = item_index(env, folder=str(folder / "model"), tag=config["trained_at"])
    return _CHECKED[key]


#: Validated indexes by (dataset, data root, config.json's mtime): a retrained checkpoint is checked again.
_CHECKED: dict[tuple[str, str, int], ItemIndex] = {}


def rank_with(index: ItemIndex, env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """Items closest to the dialogue's query in ``index``, without those already named, after the
    user's stated likes and dislikes (:func:`tools.preferences.stated_first`)."""
    exclude = set(env.mentioned_items(dialogue_context))
    query = query_text(dialogue_context)
    return stated_first(env, dialogue_context, lambda n: [name for name, _ in index.search(query, n, exclude)], top_k)


def rank(env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """The trained retriever's ranking for a dialogue."""
    return rank_with(trained_index(env), env, dialogue_context, top_k)


def train(env: ExpertEnv, cfg: TrainConfig | None = None, limit: int = 300) -> dict[str, Any]:
    """Fine-tune, index the catalog, and measure validation HIT@10 of the trained and the shipped encoder.

    Args:
        env: The dataset's environment.
        cfg: ``encoder_epochs``, ``encoder_lr``, ``encoder_batch_size``, ``max_train_rows`` and ``seed`` apply.
        limit: Validation samples the recorded HIT@10 reads (the floor comparison reads up to 1,000).
    """
    cfg = cfg or TrainConfig()
    start = time.perf_counter()
    folder = checkpoint_dir(env.dataset, NAME)
    result = fine_tune(env, cfg, folder / "model")
    config = {**cfg.as_dict(), "base": "all-MiniLM-L6-v2", "fine_tuned": True, "catalog": catalog_hash(env), "trained_at": f"{time.time():.6f}",
              "recent_turns": RECENT_TURNS}  # fmt: skip
    save_checkpoint(env.dataset, NAME, {}, config, {})
    samples = split_samples(env, "valid")[:limit]
    untrained = item_index(env)
    result["valid_hit@10_untrained"] = evaluate_ranker(lambda text, k: rank_with(untrained, env, text, k), samples)["hit@10"]
    result["valid_hit@10"] = evaluate_ranker(lambda text, k: rank(env, text, k), samples)["hit@10"]
    result["floor"] = floor_evidence(env, lambda text, k: rank(env, text, k))
    result["train_seconds"] = time.perf_counter() - start
    save_checkpoint(env.dataset, NAME, {}, config, result)
    return result


def ranker(env: ExpertEnv) -> Callable[[str, int], list[str]]:
    """The trained ranking function ``(dialogue_context, top_k) -> items`` (checks the checkpoint now)."""
    index = trained_index(env)
    return lambda text, k: rank_with(index, env, text, k)


def bench_rankers(env: ExpertEnv) -> dict[str, Callable[[str, int], list[str]]]:
    """What ``tools.bench`` scores: the tool's ranking only."""
    return {"": ranker(env)}


DOC = """Text retriever: a sentence encoder (all-MiniLM-L6-v2 fine-tuned on this dataset's dialogues) reads
the latest turns of the dialogue and returns the {dataset} items whose descriptions (title, genres,
director, cast, plot) are closest. Strong for descriptive requests ("a funny heist movie set in
space") that name no item. English.
Measured: validation HIT@10 {hit:.3f}.
"""


def make_tool(env: ExpertEnv) -> BaseTool:
    """The retriever expert of ``env``'s dataset as a tool (needs ``python -m tools.train retriever``)."""
    _, _, metrics = load_checkpoint(env.dataset, NAME)
    trained_index(env)  # refuse an old or foreign checkpoint now, not on the first call
    return learned_tool("text_retriever", lambda text, k: rank(env, text, k), DOC, env, metrics, "Matching your description: {items}.")
