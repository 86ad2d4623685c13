"""Run systems over a dataset split turn by turn (CRSLab's way) and append per-turn results.

For each recommender turn the dialogue before it is the input; its items and text are the ground
truth, which the harness writes next to the prediction *after* the system has answered. Results
are appended per turn to ``<results_dir>/<system>.jsonl``; a rerun skips finished turns.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from agent.config import GraphConfig
from agent.context import Context
from crsdata.loaders import load_samples
from crsdata.schema import RecSample
from sim.systems import GRAPH_SYSTEMS, ExpertSystem, GraphSystem, LLMOnlySystem, System

TOP_N_STORED = 50


@dataclass
class RunConfig(GraphConfig):
    """One evaluation run: what ``python -m eval run`` (and ``report``) parses, flag for field; the graph's
    options are :class:`GraphConfig`'s (``--systems`` names the ablations, one system each)."""

    split: str = "test"
    systems: list[str] = field(
        default_factory=lambda: ["full"],
        metadata={"help": "comma list: full, wo_si, wo_di, wo_sg, wo_m, wo_e, llm_only, expert:<id>"},
    )
    limit: int | None = field(default=None, metadata={"help": "first N turns (after --sample)"})
    sample: int | None = field(default=None, metadata={"help": "a seeded random subset of N turns"})
    results_dir: Path = Path("results")
    model_label: str | None = field(default=None, metadata={"help": "suffix for system names, e.g. rl or sft"})
    top_k: int = 50
    max_new_tokens: int = 32
    tuned_reply: bool = field(default=False, metadata={"help": "the reply adapter writes the graph's replies, where one was trained"})
    budget_minutes: float = field(default=60.0, metadata={"help": "wall-time budget of one system"})
    metrics: Literal["all", "rec"] = field(
        default="all", metadata={"help": "rec: recommendation metrics only, no response generation (results in <split>_rec/)"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        # the command line gives one comma list (``--systems full,wo_m``); code may give a list
        self.systems = [n.strip() for entry in self.systems for n in entry.split(",") if n.strip()]
        self.results_dir = Path(self.results_dir)


def select_samples(cfg: RunConfig) -> list[RecSample]:
    """The split's samples: a seeded random subset of ``cfg.sample`` (kept in file order), then the first ``cfg.limit``."""
    samples = load_samples(cfg.dataset, cfg.split, cfg.data_root)
    if cfg.sample is not None and cfg.sample < len(samples):
        keep = set(random.Random(cfg.seed).sample(range(len(samples)), cfg.sample))
        samples = [s for i, s in enumerate(samples) if i in keep]
    return samples[: cfg.limit] if cfg.limit is not None else samples


def make_system(name: str, cfg: RunConfig, shared: dict[str, Any]) -> System:
    """Build a system by name, sharing one loaded model and expert environment across systems."""
    from agent.llm import load_chat_model
    from tools import default_experts
    from tools.env import expert_env

    ctx = Context(top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, tuned_reply=cfg.tuned_reply, generate=cfg.metrics != "rec")
    if "model" not in shared and (name in GRAPH_SYSTEMS or name == "llm_only"):
        shared["model"] = load_chat_model(cfg.model)
    suffix = f"@{cfg.model_label}" if cfg.model_label else ""
    if name in GRAPH_SYSTEMS:
        return GraphSystem(name, GraphConfig.of(cfg), ctx, model=shared["model"], label=name + suffix)
    env = expert_env(cfg.dataset, cfg.data_root)
    if name == "llm_only":
        system = LLMOnlySystem(shared["model"], env.linker, ctx, env.facts_of)
        system.name += suffix
        return system
    if name.startswith("expert:"):
        tools = {t.name: t for t in default_experts(cfg.dataset, cfg.data_root, validated_only=False)}
        want = name.split(":", 1)[1]
        if want not in tools:
            raise ValueError(f"unknown expert {want!r}; known: {', '.join(tools)}")
        return ExpertSystem(tools[want], cfg.top_k, env.linker, env.category)
    raise ValueError(f"unknown system {name!r}; known: {', '.join(GRAPH_SYSTEMS)}, llm_only, expert:<id>")


def result_path(cfg: RunConfig, system: str) -> Path:
    """Where a system's per-turn results go."""
    safe = system.replace(":", "__").replace("/", "_")
    return results_folder(cfg) / f"{safe}.jsonl"


def results_folder(cfg: RunConfig) -> Path:
    """Where a run's results and report go; a recommendation-only run keeps its own (its texts are templates)."""
    if cfg.metrics not in ("all", "rec"):
        raise ValueError(f"metrics must be 'all' or 'rec', not {cfg.metrics!r}")
    return cfg.results_dir / cfg.dataset / (cfg.split if cfg.metrics == "all" else f"{cfg.split}_rec")


def done_ids(path: Path) -> set[str]:
    """Sample ids already in a results file (a torn last line is ignored)."""
    if not path.is_file():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.add(json.loads(line)["sample_id"])
        except (json.JSONDecodeError, KeyError):
            continue
    return out


def run_system(system: System, samples: list[RecSample], path: Path, budget_minutes: float = 60.0, progress: bool = True) -> int:
    """Predict every sample not yet in ``path``; append one JSON line per turn. Returns turns run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    finished = done_ids(path)
    todo = [s for s in samples if s.sample_id not in finished]
    warned = False
    times: list[float] = []
    with path.open("a", encoding="utf-8") as fh, tqdm(todo, desc=system.name, disable=not progress, unit="turn") as bar:
        for sample in bar:
            start = time.perf_counter()
            pred = system.predict(sample)
            wall = time.perf_counter() - start
            times.append(wall)
            row = {
                "sample_id": sample.sample_id, "system": system.name, "dialog_id": sample.dialog_id, "turn_index": sample.turn_index,
                "subtask": pred.subtask, "expert": pred.expert, "ranked": pred.ranked[:TOP_N_STORED], "response": pred.response,
                "fallbacks": pred.fallbacks, "seconds": pred.seconds, "wall": wall, "grounding": pred.grounding,
                # ground truth, written only after the system answered
                "targets": list(sample.targets), "reference": sample.response, "context_items": list(sample.context_items),
            }  # fmt: skip
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            if not warned and len(times) == 5:
                eta_min = statistics.mean(times) * len(todo) / 60
                if eta_min > budget_minutes:
                    warned = True
                    fit = max(1, int(budget_minutes * 60 / statistics.mean(times)))
                    tqdm.write(
                        f"[{system.name}] {len(todo)} turns at {statistics.mean(times):.1f}s/turn need ~{eta_min:.0f} min "
                        f"(> {budget_minutes:.0f}): stop and rerun with --sample {fit} (a seeded random subset) or --limit {fit}; "
                        "finished turns are kept and skipped on the rerun."
                    )
    return len(todo)


def run(cfg: RunConfig, progress: bool = True) -> dict[str, Path]:
    """Run every system of ``cfg``; return their result files."""
    samples = select_samples(cfg)
    what = "recommendation metrics only (no response generation)" if cfg.metrics == "rec" else "recommendation and conversation metrics"
    tqdm.write(
        f"{cfg.dataset}/{cfg.split}: {len(samples)} turns x {len(cfg.systems)} systems, {what}; budget {cfg.budget_minutes:.0f} min a system"
    )
    shared: dict[str, Any] = {}
    paths = {}
    for name in cfg.systems:
        system = make_system(name, cfg, shared)
        path = result_path(cfg, system.name)
        run_system(system, samples, path, cfg.budget_minutes, progress)
        paths[system.name] = path
    return paths
