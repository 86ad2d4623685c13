"""Shared machinery of the learned recommenders: training rows from real dialogues, a seeded
training loop with progress bars, validation HIT@10, and checkpoints with their config.

Checkpoints live under ``$LLMCRS_EXPERTS`` (default ``$LLMCRS_HOME/experts``), never in git:
``<dir>/<dataset>/<expert>/{model.pt,config.json,metrics.json}``.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from langchain_core.tools import BaseTool
from tqdm import tqdm

from crsdata.loaders import load_samples
from crsdata.metrics import RecEvaluator, hit_at_k, paired_ttest
from crsdata.paths import SetupError, home_dir
from crsdata.schema import RecSample
from tools.dialogue import format_turns
from tools.env import ExpertEnv


class CheckpointMissing(SetupError, FileNotFoundError):
    """No trained checkpoint; the message names the command that trains one."""


class CheckpointDamaged(SetupError):
    """A checkpoint that exists but cannot be read (truncated, overwritten, half-copied); the message
    names the command that retrains it. Not a :class:`CheckpointMissing`: a damaged expert is an error
    to fix, not an expert to leave out quietly."""


#: The learned experts, in training order (the reranker reads the others' rankings, so it comes last).
#: Each is the module ``tools.<name>`` with the interface :class:`LearnedExpert`; adding one is adding a
#: module and its name here (``tools.train``, ``tools.bench`` and ``default_experts`` read this tuple).
LEARNED_EXPERTS = ("kbrd", "sasrec", "retriever", "reranker")
#: ``python -m tools.train --search``: the hyper-parameters that matter for the experts trained by
#: :func:`train_loop` (each run stops early on validation HIT@10); every combination is tried, seed fixed.
SEARCH_GRID: dict[str, tuple[Any, ...]] = {"dim": (64, 128), "lr": (1e-3, 3e-3)}
SEARCHED = ("kbrd", "sasrec")


class LearnedExpert(Protocol):
    """What a learned expert's module provides."""

    NAME: str

    def train(self, env: ExpertEnv, cfg: TrainConfig) -> dict[str, Any]:
        """Train on the dataset, save the checkpoint, return its metrics (with ``floor``)."""
        ...

    def ranker(self, env: ExpertEnv) -> Callable[[str, int], list[str]]:
        """The trained ranking function ``(dialogue_context, top_k) -> items``."""
        ...

    def make_tool(self, env: ExpertEnv) -> BaseTool:
        """The trained expert as a tool."""
        ...

    def bench_rankers(self, env: ExpertEnv) -> dict[str, Callable[[str, int], list[str]]]:
        """The rankings ``tools.bench`` scores, by the suffix of their row: ``""`` the tool's (:meth:`ranker`),
        others the same trained expert scored as published figures are (the reranker's ``"+repeats"``)."""
        ...


def learned_tool(
    name: str, rank: Callable[[str, int], list[str]], doc: str, env: ExpertEnv, metrics: dict[str, Any], text: str, expert: str
) -> BaseTool:
    """A learned expert as a tool: ``doc`` (with ``{dataset}`` and ``{hit}`` slots) filled with the
    dataset and the checkpoint's validation HIT@10, the model's description (:func:`tools.base.recommender_tool`).
    ``metadata["checkpoint_dir"]`` is the folder of the ``expert`` checkpoint it ranks with (:func:`checkpoint_version`
    identifies its contents; hashed on demand, not here: building the tools is on every graph's start-up), and
    ``metadata["valid_hit@10"]`` its validation HIT@10 (:func:`validation_hit`)."""
    from tools.base import recommender_tool

    tool = recommender_tool(name, rank, doc.format(dataset=env.dataset, hit=metrics["valid_hit@10"]), text)
    tool.metadata = {
        **(tool.metadata or {}),
        "checkpoint_dir": str(checkpoint_dir(env.dataset, expert)),
        "valid_hit@10": metrics["valid_hit@10"],
    }
    return tool


def validation_hit(tool: BaseTool) -> float:
    """A recommender tool's validation HIT@10, recorded in its metadata when it was built from its checkpoint
    (:func:`learned_tool`; read once, not on every turn); 0 for a tool without one (the popularity floor, which
    every offered learned expert beat on validation)."""
    return float((tool.metadata or {}).get("valid_hit@10", 0.0))


def checkpoint_version(folder: Path) -> str:
    """A hash of a checkpoint folder's files (``model.pt``, ``config.json``): it changes when the expert is retrained."""
    h = hashlib.sha256()
    for file in ("model.pt", "config.json"):
        path = folder / file
        h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()[:16]


def learned_module(name: str) -> LearnedExpert:
    """The module of a learned expert.

    Raises:
        ValueError: Not one of :data:`LEARNED_EXPERTS`.
    """
    if name not in LEARNED_EXPERTS:
        raise ValueError(f"unknown expert {name!r}; known: {', '.join(LEARNED_EXPERTS)}")
    return importlib.import_module(f"tools.{name}")  # type: ignore[return-value]


def experts_dir() -> Path:
    """Root of the expert checkpoints."""
    return Path(os.environ.get("LLMCRS_EXPERTS", home_dir() / "experts")).expanduser()


def checkpoint_dir(dataset: str, expert: str) -> Path:
    """Folder of one expert's checkpoint."""
    return experts_dir() / dataset / expert


def train_command(expert: str, dataset: str) -> str:
    """The command that trains ``expert`` on ``dataset``."""
    return f"python -m tools.train {expert} --dataset {dataset}"


def retrain_command(dataset: str, experts: tuple[str, ...]) -> str:
    """The ``tools.train`` command that retrains ``experts`` of ``dataset`` as their checkpoints were trained.

    Every :class:`TrainConfig` value a checkpoint recorded that differs from the default becomes a flag
    (e.g. INSPIRED's retriever: ``--encoder-epochs 3.0``); the experts trained with different values
    get a command each. Experts without a checkpoint (KBRD on a dataset without a KG) are left out.
    """
    defaults = TrainConfig().as_dict()
    by_flags: dict[str, list[str]] = {}
    for expert in experts:
        path = checkpoint_dir(dataset, expert) / "config.json"
        if not path.is_file():
            continue
        config = json.loads(path.read_text())
        flags = " ".join(f"--{k.replace('_', '-')} {config[k]}" for k in defaults if k in config and config[k] != defaults[k])
        by_flags.setdefault(flags, []).append(expert)
    return " && ".join(
        f"python -m tools.train {' '.join(names)} --dataset {dataset}" + (f" {flags}" if flags else "") for flags, names in by_flags.items()
    )


def save_checkpoint(dataset: str, expert: str, state: dict[str, Any], config: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write model state, config and metrics; return the folder."""
    folder = checkpoint_dir(dataset, expert)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(state, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=1))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    return folder


def load_checkpoint(dataset: str, expert: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(state, config, metrics) of a trained expert.

    Raises:
        CheckpointMissing: Nothing trained yet; names the train command.
        CheckpointDamaged: The checkpoint cannot be read; names the train command.
    """
    folder = checkpoint_dir(dataset, expert)
    if not (folder / "model.pt").is_file():
        raise CheckpointMissing(f"no trained {expert} for {dataset} under {folder}; train it with `{train_command(expert, dataset)}`")
    try:
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
        config = json.loads((folder / "config.json").read_text())
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        KeyError,
        json.JSONDecodeError,
        FileNotFoundError,
    ) as exc:  # what torch.load and json raise on damaged files
        raise CheckpointDamaged(
            f"the {expert} checkpoint for {dataset} under {folder} is damaged ({type(exc).__name__}); "
            f"retrain it with `{train_command(expert, dataset)}`"
        ) from exc
    return state, config, checkpoint_metrics(dataset, expert)


def checkpoint_metrics(dataset: str, expert: str) -> dict[str, Any]:
    """The metrics a trained expert recorded (empty when there are none)."""
    path = checkpoint_dir(dataset, expert) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def load_state(model: torch.nn.Module, state: dict[str, Any], dataset: str, expert: str) -> None:
    """Load weights, turning a checkpoint from an older model version into a clear error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointMissing(
            f"the {expert} checkpoint for {dataset} does not fit this version ({str(exc).splitlines()[0]}); retrain with `{train_command(expert, dataset)}`"
        ) from exc


@dataclass
class TrainConfig:
    """Hyper-parameters common to the learned recommenders (tiny defaults that train in minutes here)."""

    dim: int = 64
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 0.0
    seed: int = 0
    max_train_rows: int | None = None
    patience: int = 4
    encoder_epochs: float = 2.0  # the text retriever's fine-tuning (sentence-transformers)
    encoder_lr: float = 1e-4
    encoder_batch_size: int = 32
    query_epochs: int = 8  # the retriever's static query encoder (tools.query_encoder), the best epoch on validation kept
    query_lr: float = 3e-3
    query_ce_weight: float = 0.3
    query_max_texts: int = 12000

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return asdict(self)


def seed_all(seed: int) -> None:
    """Seed python and torch."""
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Row:
    """One training/evaluation row: what the context mentions and one target item index."""

    entities: list[int]
    items: list[int]
    target: int


def context_rows(env: ExpertEnv, samples: list[RecSample], entity_ids: dict[str, int], item_index: dict[str, int]) -> list[Row]:
    """Rows from samples: entities (in mention order) and items linked in the whole context (both
    speakers), one row per target in the item vocabulary."""
    rows = []
    for s in samples:
        m = env.linker.link(format_turns(s.context))
        ents = [entity_ids[e] for e in m.ordered if e in entity_ids and e not in m.disliked]
        items = [item_index[i] for i in m.items if i in item_index]
        for t in s.targets:
            if t in item_index:
                rows.append(Row(ents, items, item_index[t]))
    return rows


def split_samples(env: ExpertEnv, split: str) -> list[RecSample]:
    """Samples of a split of the env's dataset."""
    return load_samples(env.dataset, split, env.root)


def evaluate_ranker(rank: Callable[[str, int], list[str]], samples: list[RecSample], top_k: int = 50) -> dict[str, float]:
    """CRSLab metrics of a ranking function over samples (context text -> ranked item names)."""
    ev = RecEvaluator()
    for s in samples:
        ev.add(rank(format_turns(s.context), top_k), s.targets, s.context_items)
    return ev.report()


#: Validation turns the floor comparison reads, and its significance level.
FLOOR_SAMPLES = 1000
FLOOR_ALPHA = 0.05


def floor_evidence(env: ExpertEnv, rank: Callable[[str, int], list[str]], k: int = 10) -> dict[str, Any]:
    """Does a trained expert beat the popularity floor on the validation split?

    Per target row, HIT@k of the expert and of :func:`tools.popularity.floor_rank`; the verdict is a
    one-sided paired t-test (expert better) at ``FLOOR_ALPHA``. A point estimate alone is not
    evidence on a small split: on INSPIRED's 49 validation rows SASRec scores 3 hits to popularity's
    1 (p=0.16), yet it scores below popularity on the 291 test rows.

    Returns:
        ``rows``, ``hit@k``, ``floor_hit@k``, ``pvalue`` and ``beats`` (bool).
    """
    from tools.popularity import floor_rank

    mine: list[float] = []
    floor: list[float] = []
    for s in split_samples(env, "valid")[:FLOOR_SAMPLES]:
        text = format_turns(s.context)
        ranked, base = rank(text, k), floor_rank(env, text, k)
        mine += [hit_at_k(ranked, t, k) for t in s.targets]
        floor += [hit_at_k(base, t, k) for t in s.targets]
    test = paired_ttest(mine, floor, alternative="greater") if len(mine) >= 2 else None
    pvalue = test.pvalue if test else 1.0
    return {
        "rows": len(mine),
        f"hit@{k}": sum(mine) / max(1, len(mine)),
        f"floor_hit@{k}": sum(floor) / max(1, len(floor)),
        "pvalue": pvalue,
        "alpha": FLOOR_ALPHA,
        "beats": pvalue < FLOOR_ALPHA,
    }


def _versus_floor(ev: dict[str, Any]) -> str:
    return f"validation HIT@10 {ev['hit@10']:.4f} vs popularity {ev['floor_hit@10']:.4f} on {ev['rows']} rows"


def floor_summary(metrics: dict[str, Any]) -> str:
    """One line: the expert against the floor on validation."""
    ev = metrics["floor"]
    return f"offered: {_versus_floor(ev)} (one-sided paired t-test p={ev['pvalue']:.3g})"


def offer_verdict(expert: str, dataset: str, metrics: dict[str, Any]) -> str | None:
    """``None`` when the checkpoint's metrics show it beats the floor, else why it is withheld."""
    ev = metrics.get("floor")
    if ev is None:
        return f"{expert} for {dataset} has no comparison with the popularity floor (an older checkpoint); retrain with `{train_command(expert, dataset)}`"
    versus = metrics.get("versus")  # an expert built on others (the reranker) must also beat the best of them
    if ev["beats"] and versus and not versus["beats"]:
        return (
            f"{expert} for {dataset} is withheld: validation HIT@10 {versus['hit@10']:.4f} vs {versus['expert']} "
            f"{versus['their_hit@10']:.4f}, one of the experts it combines (one-sided paired t-test p={versus['pvalue']:.3f}, "
            f"needs < {FLOOR_ALPHA})"
        )
    if ev["beats"]:
        return None
    return (
        f"{expert} for {dataset} is withheld: {_versus_floor(ev)} does not beat the floor "
        f"(one-sided paired t-test p={ev['pvalue']:.3f}, needs < {ev['alpha']})"
    )


def train_loop(
    model: torch.nn.Module,
    rows: list[Row],
    validate: Callable[[], float],
    cfg: TrainConfig,
    desc: str,
) -> dict[str, Any]:
    """Adam over shuffled mini-batches with early stopping on validation HIT@10; keeps the best weights.

    ``model`` maps a batch of entity-index sequences to scores over every item (KBRD and SASRec
    both do); the loss is the cross-entropy of each row's target item.
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)
    best, best_state, bad, history = -1.0, None, 0, []
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = rows[:]
        rng.shuffle(order)
        total = 0.0
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        for batch in tqdm(batches, desc=f"{desc} epoch {epoch + 1}/{cfg.epochs}", leave=False):
            opt.zero_grad()
            scores = model([r.entities for r in batch])
            loss = torch.nn.functional.cross_entropy(scores, torch.tensor([r.target for r in batch]))
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            score = validate()
        history.append({"epoch": epoch + 1, "loss": total / max(1, len(order)), "valid_hit@10": score})
        tqdm.write(f"{desc} epoch {epoch + 1}: loss {total / max(1, len(order)):.4f} valid HIT@10 {score:.4f}")
        if score > best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    return {"valid_hit@10": best, "history": history, "train_seconds": time.perf_counter() - start}
