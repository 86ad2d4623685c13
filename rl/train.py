"""``python -m rl.train --config rl/configs/tiny.yaml``: RLPF of the manager LLM.

Every field of :class:`ScriptArguments` and :class:`rl.trainer.RLPFConfig` is settable from the
command line or the YAML file (``TrlParser``). Writes the fine-tuned model folder (load it with
``build_crs_graph(model=<output_dir>)`` or ``python -m eval run --model <output_dir>``), the training
log, the reward curve and a summary with the mean validation reward before and after.
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

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class ScriptArguments:
    """What to train on."""

    model_name_or_path: str = field(default="embedded", metadata={"help": "'embedded' (SmolLM2-135M-Instruct), a folder or a hub id"})
    dataset: str = field(default="redial", metadata={"help": "dataset of the training contexts"})
    data_root: str | None = field(default=None, metadata={"help": "data directory"})
    train_contexts: int = field(default=16, metadata={"help": "training contexts (seeded sample of the train split)"})
    valid_contexts: int = field(default=16, metadata={"help": "held-out contexts for the before/after reward (valid split)"})


def load_policy(name: str) -> tuple[Any, Any]:
    """Model and tokenizer to train (fp32)."""
    from agent.llm import embedded_model_dir, load_hf

    model, tok = load_hf(embedded_model_dir() if name == "embedded" else name)
    return model, tok


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import TrlParser

    from crsdata.loaders import load_samples
    from rl.trainer import RLPFConfig, RLPFTrainer, mean_reward, write_logs

    parser = TrlParser((ScriptArguments, RLPFConfig))  # type: ignore[arg-type]
    script, cfg = parser.parse_args_and_config(args=argv)
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


if __name__ == "__main__":
    sys.exit(main())
