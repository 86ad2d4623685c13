"""Text retriever: a bi-encoder fine-tuned from all-MiniLM-L6-v2 on the training split, queried by a static encoder.

The query is the dialogue's last turns with their speakers; an item is its catalog text (title, genres, people, plot; :func:`tools.retrieval.item_text`). Training is
sentence-transformers' trainer with in-batch negatives (``MultipleNegativesRankingLoss``): every
(context, target item) pair of the training split is a positive, the other items of the batch are
the negatives. Items are indexed with FAISS (:mod:`tools.retrieval`) by the fine-tuned transformer.

A query is embedded by a static encoder (:mod:`tools.query_encoder`: averaged token embeddings and one
linear map, a tenth of a millisecond) trained against the fine-tuned transformer, instead of a transformer
pass (15-30 ms on this machine), when it is at least as good on validation HIT@10 (the checkpoint's
``query``: ``static`` or ``transformer``).

The fine-tuned model is saved under the expert's checkpoint folder (``model/``) with the catalog's
hash; a checkpoint from another catalog is refused with the command that retrains it. Retraining with
the fine-tuning settings of the checkpoint (and the same catalog) keeps its fine-tuned transformer and its
item vectors, and trains the query encoder only.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from langchain_core.tools import BaseTool

from crsdata.loaders import available_datasets, load_dialogues
from crsdata.paths import DataError
from crsdata.schema import RecSample
from tools.dialogue import format_turns, parse_dialogue
from tools.env import ExpertEnv, item_index
from tools.learned import (
    CheckpointDamaged,
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
from tools.query_encoder import QueryTraining, StaticQuery, StaticQueryEncoder, token_ids, train_query_encoder
from tools.retrieval import ItemIndex, embed, embedder, item_text, load_encoder

NAME = "retriever"
RECENT_TURNS = 4
#: What a fine-tuned transformer depends on: retraining with these unchanged keeps it (and its item vectors).
FINE_TUNING = ("encoder_epochs", "encoder_lr", "encoder_batch_size", "max_train_rows", "seed", "catalog", "recent_turns", "base")

Query = Callable[[str], np.ndarray]


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


#: Validated indexes and query encoders by (dataset, data root, config.json's mtime): a retrained checkpoint is checked again.
_CHECKED: dict[tuple[str, str, int], tuple[ItemIndex, Query | None]] = {}


def trained_retriever(env: ExpertEnv) -> tuple[ItemIndex, Query | None]:
    """The item index of the dataset's fine-tuned retriever and its static query encoder (``None``: the
    transformer embeds queries), checked once per training run, then cached.

    Raises:
        CheckpointMissing: Nothing trained, or trained on another catalog (names the train command).
    """
    folder = checkpoint_dir(env.dataset, NAME)
    config_file = folder / "config.json"
    key = (env.dataset, str(env.root), config_file.stat().st_mtime_ns if config_file.is_file() else -1)
    if key in _CHECKED:
        return _CHECKED[key]
    state, config, _ = load_checkpoint(env.dataset, NAME)
    if not config.get("fine_tuned") or not (folder / "model").is_dir():
        raise CheckpointMissing(
            f"the {NAME} for {env.dataset} is not fine-tuned (an older checkpoint); retrain with `{train_command(NAME, env.dataset)}`"
        )
    if config.get("catalog") != catalog_hash(env):
        raise CheckpointMissing(
            f"the {NAME} for {env.dataset} was trained on another catalog ({config.get('catalog')}); retrain with `{train_command(NAME, env.dataset)}`"
        )
    index = item_index(env, folder=str(folder / "model"), tag=config.get("encoder_trained_at", config["trained_at"]))
    query = static_query(state, str(folder / "model")) if config.get("query") == "static" else None
    _CHECKED[key] = (index, query)
    return _CHECKED[key]


def trained_index(env: ExpertEnv) -> ItemIndex:
    """The item index of the dataset's fine-tuned retriever (:func:`trained_retriever`)."""
    return trained_retriever(env)[0]


def static_query(state: dict[str, Any], folder: str) -> StaticQuery:
    """The static query encoder saved in ``state``, with the tokenizer of the transformer in ``folder``."""
    model = StaticQueryEncoder(torch.zeros_like(state["tokens.weight"]))
    model.load_state_dict(state)
    return StaticQuery(model, embedder(folder).tokenizer)


def rank_with(index: ItemIndex, env: ExpertEnv, dialogue_context: str, top_k: int, query: Query | None = None) -> list[str]:
    """Items closest to the dialogue's query in ``index`` (embedded by ``query``, or by the index's
    transformer when ``None``), without those already named, after the user's stated likes and dislikes
    (:func:`tools.preferences.stated_first`)."""
    exclude = set(env.mentioned_items(dialogue_context))
    text = query_text(dialogue_context)
    vector = query(text) if query is not None else embed([text], folder=index.folder)
    return stated_first(env, dialogue_context, lambda n: [name for name, _ in index.search_vector(vector, n, exclude)], top_k)


def rank(env: ExpertEnv, dialogue_context: str, top_k: int) -> list[str]:
    """The trained retriever's ranking for a dialogue."""
    index, query = trained_retriever(env)
    return rank_with(index, env, dialogue_context, top_k, query)


def distillation_texts(env: ExpertEnv, cap: int, seed: int) -> list[str]:
    """What the query encoder is distilled on: every prefix of this dataset's training dialogues (as a query)
    and its item texts, then the other datasets' training prefixes (shuffled, seeded) up to ``cap`` texts:
    unlabelled text only, so no split but the training splits is read."""

    def prefixes(dataset: str) -> list[str]:
        return [query_text(format_turns(d.turns[:k])) for d in load_dialogues(dataset, "train", env.root) for k in range(1, len(d.turns))]

    own = [*prefixes(env.dataset), *(item_text(i) for i in env.catalog.all_items(env.dataset))]
    others: list[str] = []
    for dataset in available_datasets(env.root):
        if dataset != env.dataset:
            try:
                others += prefixes(dataset)
            except DataError:  # a dataset whose files are incomplete here
                continue
    random.Random(seed).shuffle(others)
    return list(dict.fromkeys([*own, *others]))[:cap]


def train_query(
    env: ExpertEnv, cfg: TrainConfig, index: ItemIndex, folder: str, valid: list[RecSample]
) -> tuple[StaticQueryEncoder, list[dict[str, Any]]]:
    """Train the static query encoder against the fine-tuned transformer in ``folder`` (:mod:`tools.query_encoder`)."""
    encoder = embedder(folder)
    texts = distillation_texts(env, cfg.query_max_texts, cfg.seed)
    teacher = torch.from_numpy(embed(texts, progress=True, folder=folder))
    tok = encoder.tokenizer
    row = {name: i for i, name in enumerate(index.names)}
    labelled = [
        (token_ids(tok, query_text(format_turns(s.context))), row[t]) for s in split_samples(env, "train") for t in s.targets if t in row
    ]
    data = QueryTraining([token_ids(tok, t) for t in texts], teacher, labelled, torch.from_numpy(index.vectors))
    init = encoder[0].auto_model.get_input_embeddings().weight.detach().clone()

    def validate(model: StaticQueryEncoder) -> float:
        query = StaticQuery(model, encoder.tokenizer)
        return evaluate_ranker(lambda text, k: rank_with(index, env, text, k, query), valid)["hit@10"]

    return train_query_encoder(init, data, validate, cfg.query_epochs, cfg.query_lr, cfg.query_ce_weight, cfg.seed)


def train(env: ExpertEnv, cfg: TrainConfig | None = None, limit: int = 300) -> dict[str, Any]:
    """Fine-tune (unless the checkpoint's transformer was fine-tuned with the same settings), index the catalog,
    train the static query encoder and keep it if it is at least as good on validation, and measure validation
    HIT@10 of the trained and the shipped encoder.

    Args:
        env: The dataset's environment.
        cfg: ``encoder_*``, ``query_*``, ``max_train_rows`` and ``seed`` apply.
        limit: Validation samples the recorded HIT@10 reads (the floor comparison reads up to 1,000; the
            query encoder's epochs and its choice read the whole validation split).
    """
    cfg = cfg or TrainConfig()
    start = time.perf_counter()
    folder = checkpoint_dir(env.dataset, NAME)
    config = {**cfg.as_dict(), "base": "all-MiniLM-L6-v2", "fine_tuned": True, "catalog": catalog_hash(env), "trained_at": f"{time.time():.6f}",
              "recent_turns": RECENT_TURNS}  # fmt: skip
    try:
        _, before, result = load_checkpoint(env.dataset, NAME)
    except (CheckpointMissing, CheckpointDamaged):  # nothing to keep: fine-tune from the shipped encoder
        before, result = {}, {}
    if (folder / "model").is_dir() and before.get("fine_tuned") and all(before.get(k) == config[k] for k in FINE_TUNING):
        print(
            f"{NAME}/{env.dataset}: the fine-tuned transformer is up to date (same settings and catalog); training the query encoder only",
            flush=True,
        )
        result = {k: result[k] for k in ("train_pairs", "train_loss") if k in result}
        config["encoder_trained_at"] = before.get("encoder_trained_at", before["trained_at"])
    else:
        result = fine_tune(env, cfg, folder / "model")
        config["encoder_trained_at"] = config["trained_at"]
    save_checkpoint(env.dataset, NAME, {}, {**config, "query": "transformer"}, {})
    index = trained_index(env)
    valid = split_samples(env, "valid")
    model, history = train_query(env, cfg, index, str(folder / "model"), valid)
    transformer = evaluate_ranker(lambda text, k: rank_with(index, env, text, k), valid)["hit@10"]
    static = max(h["valid_hit@10"] for h in history)
    config["query"] = "static" if static >= transformer else "transformer"
    result.update({"query_history": history, "valid_hit@10_static_query": static, "valid_hit@10_transformer_query": transformer})
    save_checkpoint(env.dataset, NAME, model.state_dict(), config, {})
    samples = valid[:limit]
    untrained = item_index(env)
    result["valid_hit@10_untrained"] = evaluate_ranker(lambda text, k: rank_with(untrained, env, text, k), samples)["hit@10"]
    result["valid_hit@10"] = evaluate_ranker(lambda text, k: rank(env, text, k), samples)["hit@10"]
    result["floor"] = floor_evidence(env, lambda text, k: rank(env, text, k))
    result["train_seconds"] = time.perf_counter() - start
    save_checkpoint(env.dataset, NAME, model.state_dict(), config, result)
    return result


def ranker(env: ExpertEnv) -> Callable[[str, int], list[str]]:
    """The trained ranking function ``(dialogue_context, top_k) -> items`` (checks the checkpoint now)."""
    index, query = trained_retriever(env)
    return lambda text, k: rank_with(index, env, text, k, query)


def bench_rankers(env: ExpertEnv) -> dict[str, Callable[[str, int], list[str]]]:
    """What ``tools.bench`` scores: the tool's ranking, and (when the tool queries with the static encoder)
    the same index queried by the fine-tuned transformer, ``+transformer-query``, for comparison."""
    index, query = trained_retriever(env)
    out = {"": ranker(env)}
    if query is not None:
        out["+transformer-query"] = lambda text, k: rank_with(index, env, text, k)
    return out


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
    return learned_tool(
        "text_retriever", lambda text, k: rank(env, text, k), DOC, env, metrics, "Matching your description: {items}.", NAME
    )
