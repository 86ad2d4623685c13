"""``python -m rl.train --config rl/configs/manager_redial.yaml``: train the manager.

Two policies, one command:

* ``policy: head`` (the default, what ships): SFT then RLPF of the manager's decision head on the
  LLM's cached hidden states and cached rewards (:mod:`rl.manager`; build the data first with
  ``python -m rl.decisions --dataset <name>``). Minutes on a CPU. Writes ``manager.pt`` and
  ``manager.json`` to ``output_dir`` (default ``$LLMCRS_HOME/managers/<dataset>``, where the graph
  finds it), the training log, the reward curve and a summary.
* ``policy: full``: RLPF of the whole LLM over graph rollouts (:mod:`rl.trainer`, the paper's setting
  for a GPU; ``rl/configs/tiny.yaml`` and ``paper.yaml``). Writes the fine-tuned model folder (load it
  with ``build_crs_graph(model=<output_dir>)``).

Every field of :class:`ScriptArguments` and of the policy's config is settable from the command line
or the YAML file (``TrlParser``).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crsdata.paths import DataError, run_cli

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class ScriptArguments:
    """What to train on."""

    model_name_or_path: str = field(
        default="embedded",
        metadata={
            "help": "'embedded' (SmolLM2-135M-Instruct), a folder or a hub id; head: whose hidden states it reads",
            "aliases": ["--model"],
        },
    )
    dataset: str = field(default="redial", metadata={"help": "dataset of the training contexts"})
    data_root: str | None = field(default=None, metadata={"help": "data directory"})
    train_contexts: int = field(default=16, metadata={"help": "training contexts (seeded sample of the train split)"})
    valid_contexts: int = field(default=16, metadata={"help": "held-out contexts for the before/after reward (valid split)"})
    policy: str = field(default="head", metadata={"help": "head (decision head on cached features) or full (whole-LLM rollouts)"})
    save_sft: bool = field(default=True, metadata={"help": "head: also save the SFT-only manager (sft/, the w/o RL ablation)"})


def load_policy(name: str) -> tuple[Any, Any]:
    """Model and tokenizer to train (fp32)."""
    from agent.llm import embedded_model_dir, load_hf

    model, tok = load_hf(embedded_model_dir() if name == "embedded" else name)
    return model, tok


def train_head(script: ScriptArguments, cfg: Any, argv: list[str]) -> int:
    """SFT + RLPF of the decision head on cached decisions; save it where the graph finds it (``argv``: the
    command line it was given, recorded in the saved manager's ``command``)."""
    from transformers import set_seed

    from agent.llm import EMBEDDED_NAME
    from agent.manager import ManagerHead, head_slug, save_manager
    from crsdata.paths import home_dir
    from rl.decisions import load_features, load_split, recommenders_of
    from rl.manager import decision_tensors, guard_matching, train_manager
    from rl.trainer import write_logs

    splits = ("train", "valid")
    for name in ("rl_split", "sim_kl_split"):  # the splits the phases read, checked before anything is loaded
        if getattr(cfg, name) not in splits:
            raise SystemExit(f"{name} must be train or valid, got {getattr(cfg, name)!r}")
    if cfg.sim_rounds > 0 and not 1 <= cfg.sim_rollouts <= cfg.sim_dialogues:
        raise SystemExit(f"sim_rollouts must be between 1 and sim_dialogues ({cfg.sim_dialogues}), got {cfg.sim_rollouts}")
    if cfg.sim_rounds > 0 and cfg.sim_branch and cfg.sim_rollouts > 1:
        raise SystemExit("sim_branch plays each dialogue greedily (pairs, not rollouts): set sim_rollouts to 1 or sim_branch to false")
    set_seed(cfg.seed)
    start = time.perf_counter()
    experts = recommenders_of(script.dataset, "train")
    feats = {split: load_features(script.dataset, split, script.model_name_or_path) for split in splits}
    rewards = cfg.rewards()  # the config's reward functions and weights
    data = {
        split: decision_tensors(load_split(script.dataset, split), feats[split], experts, cfg.lam, cfg.hit_k, rewards) for split in splits
    }
    also = [name.strip() for name in cfg.sft_also.split(",") if name.strip()]
    if script.dataset in also:
        raise SystemExit(f"sft_also names other datasets; {script.dataset} is the one being trained")
    borrowed = [decision_tensors(load_split(name, "train"), load_features(name, "train", script.model_name_or_path), experts, cfg.lam, cfg.hit_k, rewards)
                for name in also]  # fmt: skip
    head = ManagerHead(data["train"].llm.shape[1], data["train"].state.shape[1], experts, cfg.hidden, cfg.dropout)
    trained = train_manager(head, cfg, data["train"], data["valid"], rl_data=data[cfg.rl_split], sft_also=borrowed)
    report, history = trained.report, trained.history
    if cfg.sim_rounds > 0:  # then RLPF on simulated conversations (rl.episodes)
        from rl.episodes import train_on_conversations

        conv = train_on_conversations(
            head, cfg, script.dataset, data[cfg.sim_kl_split], script.data_root, model_spec=script.model_name_or_path
        )
        history += conv.pop("history")
        report.update(conv)
    if trained.sft_reference is not None and cfg.rl_epochs > 0:  # learned matching must beat the best expert out of fold (rl.manager)
        report.update(guard_matching(head, trained.sft_reference, cfg, data[cfg.rl_split]))
    out = Path(cfg.output_dir) if cfg.output_dir and cfg.output_dir != "trainer_output" else home_dir() / "managers" / script.dataset
    if out == home_dir() / "managers" / script.dataset and feats["train"]["model"] != EMBEDDED_NAME:  # a head per model
        out = out / head_slug(feats["train"]["model"])
    common = {
        "dataset": script.dataset,
        "model": feats["train"]["model"],
        "model_sha256": feats["train"].get("model_sha256", ""),
        "experts": experts,
        "train_rows": len(data["train"]),
        "valid_rows": len(data["valid"]),
        "seconds": round(time.perf_counter() - start, 1),
        "lam": cfg.lam,
        "sft_also": also,
        "sft_also_rows": sum(len(b) for b in borrowed),
        "command": _command(script.dataset, argv, also, script.model_name_or_path),
    }
    meta = {**common, **report}
    save_manager(head, out, meta)
    if trained.sft_head is not None and script.save_sft:  # the w/o RL ablation, evaluated by `python -m eval manager`
        # its own figures only: the ones after RLPF, the conversations and the guard describe the full head
        save_manager(trained.sft_head, out / "sft", {**common, **trained.sft_report(), "phase": "sft"})
    write_logs([h for h in history if h.get("phase") == "rlpf"], out)
    if any(h.get("phase") == "conversations" for h in history):
        write_logs([h for h in history if h.get("phase") == "conversations"], out, "conversations_",
                   "RLPF on simulated conversations: success per round")  # fmt: skip
    (out / "rlpf_summary.json").write_text(json.dumps(meta, indent=1))
    for key, value in report.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}", flush=True)
    print(f"saved the trained manager to {out} ({meta['seconds']:.0f}s)")
    return 0


def _command(dataset: str, argv: list[str], also: list[str], model: str = "embedded") -> str:
    """The commands that regenerate a saved manager: its experts, its decision data (and the training
    decisions of the ``sft_also`` datasets), then this training run."""
    from tools.learned import retrain_command
    from tools.train import EXPERTS

    flag = "" if model == "embedded" else f" --model {model}"
    steps = [retrain_command(dataset, EXPERTS), f"python -m rl.decisions --dataset {dataset}{flag}"]
    steps += [f"python -m rl.decisions --dataset {name} --splits train{flag}" for name in also]
    steps.append(f"python -m rl.train {' '.join(_how(argv)) or f'--config rl/configs/manager_{dataset}.yaml'}")
    return " && ".join(steps)


def _how(argv: list[str]) -> list[str]:
    """The flags that say how to train, without where the result goes (``--output_dir``), for the
    ``command`` a saved manager records.

    >>> _how(["--config", "c.yaml", "--output_dir", "/tmp/x", "--seed=1", "--output_dir=/tmp/y"])
    ['--config', 'c.yaml', '--seed=1']
    """
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--output_dir", "--output-dir"):
            skip = True
        elif not arg.startswith(("--output_dir=", "--output-dir=")):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import TrlParser

    from crsdata.loaders import load_samples
    from rl.manager import ManagerConfig
    from rl.trainer import RLPFConfig, RLPFTrainer, mean_reward, write_logs

    argv = list(sys.argv[1:] if argv is None else argv)
    policy = _policy_of(argv)
    if policy not in ("head", "full"):
        raise DataError(f"unknown policy {policy!r}: head or full")
    parser = TrlParser((ScriptArguments, ManagerConfig if policy == "head" else RLPFConfig))  # type: ignore[arg-type]
    script, cfg = parser.parse_args_and_config(args=argv)
    if script.policy == "head":
        return train_head(script, cfg, argv)
    rng = random.Random(cfg.seed)
    train_all = load_samples(script.dataset, "train", script.data_root)
    valid_all = load_samples(script.dataset, "valid", script.data_root)
    train = rng.sample(train_all, min(script.train_contexts, len(train_all)))
    valid = rng.sample(valid_all, min(script.valid_contexts, len(valid_all)))
    samples = {s.sample_id: s for s in [*train, *valid]}
    model, tok = load_policy(script.model_name_or_path)
    trainer = RLPFTrainer(
        model, cfg, Dataset.from_list([{"sample_id": s.sample_id} for s in train]), tok, samples, script.dataset, script.data_root
    )
    start = time.perf_counter()
    before = mean_reward(trainer, valid)
    print(
        f"validation mean reward before: {before['mean_reward']:.4f} (recommend share {before['recommend_share']:.2f}, n={len(valid)})",
        flush=True,
    )
    trainer.train()
    after = mean_reward(trainer, valid)
    print(
        f"validation mean reward after:  {after['mean_reward']:.4f} (recommend share {after['recommend_share']:.2f}, n={len(valid)})",
        flush=True,
    )
    out = Path(cfg.output_dir)
    trainer.save_model(str(out))
    write_logs(trainer.history, out)
    summary = {"before": before, "after": after, "steps": trainer.state.global_step, "seconds": time.perf_counter() - start,
               "lam": cfg.lam, "model": script.model_name_or_path, "dataset": script.dataset}  # fmt: skip
    (out / "rlpf_summary.json").write_text(json.dumps(summary, indent=1))
    print(f"saved {out} ({summary['seconds']:.0f}s): load it with build_crs_graph(model='{out}')")
    return 0


def _policy_of(argv: list[str]) -> str:
    """The ``policy`` of a command line or its YAML config (it decides which config class parses the rest)."""
    import yaml

    for i, arg in enumerate(argv):
        if arg.startswith("--policy"):
            return arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
    for i, arg in enumerate(argv):
        if arg.startswith("--config"):
            path = Path(arg.split("=", 1)[1] if "=" in arg else argv[i + 1])
            if not path.is_file():
                raise DataError(f"no config file {path}; the shipped ones are in rl/configs/ (e.g. rl/configs/manager_redial.yaml)")
            return str((yaml.safe_load(path.read_text()) or {}).get("policy", "head"))
    return "head"


if __name__ == "__main__":
    sys.exit(run_cli(main))
