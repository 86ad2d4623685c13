"""``python -m rl.sft --config rl/configs/sft_tiny.yaml``: a short supervised warm-start of the
manager LLM on the detection stage, with TRL's ``SFTTrainer``, before RLPF.

Examples come from the training split: the detection prompt (Table 2 #1, with the graph's own
demonstrations) of a recommender turn's context, and as completion the sub-task in schema form,
labelled from the reference turn by :func:`agent.heuristics.label_turn` (which sees the reference
response; the model only sees the context). The completion is exactly what constrained decoding
scores (``{"name": "<sub-task>"}``). Prints the detection accuracy on validation contexts before and after.
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

from crsdata.paths import run_cli

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class SFTScriptArguments:
    """What to warm-start on."""

    model_name_or_path: str = field(default="embedded")
    dataset: str = field(default="redial")
    data_root: str | None = field(default=None)
    train_examples: int = field(default=240)
    valid_examples: int = field(default=60)
    n_demos: int = field(default=2)


def detection_examples(dataset: str, split: str, n: int, n_demos: int, data_root: str | None, seed: int) -> list[dict[str, Any]]:
    """(prompt, completion, label) of recommender turns of a split, seeded sample of ``n``."""
    from agent.deciders import detection_prompt
    from agent.heuristics import label_turn
    from agent.resources import Ablations, Resources
    from crsdata.loaders import load_dialogues
    from tools.dialogue import format_dialogue

    res = Resources(None, [], dataset, data_root, n_demos, Ablations(), 0)
    out = []
    for dlg in load_dialogues(dataset, split, res.env.root):
        for i, turn in enumerate(dlg.turns):
            if turn.role == "recommender" and i > 0 and dlg.turns[i - 1].role == "user":
                ctx = [(t.role, t.text) for t in dlg.turns[:i]]
                label = label_turn(ctx, turn.text, turn.items, res.env)
                out.append(
                    {"prompt": detection_prompt(res, format_dialogue(ctx[-6:])), "completion": json.dumps({"name": label}), "label": label}
                )
    random.Random(seed).shuffle(out)
    return out[:n]


def detection_accuracy(model: Any, tokenizer: Any, examples: list[dict[str, Any]]) -> float:
    """Share of examples where constrained detection picks the label."""
    import torch
    from langchain_core.messages import HumanMessage

    from agent.llm import LocalHFChatModel
    from tools.subtasks import SUBTASKS

    chat = LocalHFChatModel(hf_model=model, hf_tokenizer=tokenizer, prefix_cache_size=4)
    options = list(SUBTASKS)
    right = 0
    model.eval()
    with torch.no_grad():
        for ex in examples:
            lp = chat.choice_logprobs([HumanMessage(ex["prompt"])], options, prefix='{"name": "', suffix='"}')
            right += options[int(lp.argmax())] == ex["label"]
    return right / max(1, len(examples))


def main(argv: list[str] | None = None) -> int:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer, TrlParser

    from rl.train import load_policy

    script, cfg = TrlParser((SFTScriptArguments, SFTConfig)).parse_args_and_config(args=argv)  # type: ignore[arg-type]
    start = time.perf_counter()
    train = detection_examples(script.dataset, "train", script.train_examples, script.n_demos, script.data_root, cfg.seed)
    valid = detection_examples(script.dataset, "valid", script.valid_examples, script.n_demos, script.data_root, cfg.seed)
    model, tok = load_policy(script.model_name_or_path)
    before = detection_accuracy(model, tok, valid)
    print(f"detection accuracy on {len(valid)} validation turns before: {before:.3f}", flush=True)
    data = Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": e["prompt"]}], "completion": [{"role": "assistant", "content": e["completion"]}]}
            for e in train
        ]
    )
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
    trainer.train()
    after = detection_accuracy(trainer.model, tok, valid)
    print(f"detection accuracy on {len(valid)} validation turns after:  {after:.3f}", flush=True)
    out = Path(cfg.output_dir)
    trainer.save_model(str(out))
    labels = {lab: sum(e["label"] == lab for e in train) for lab in {e["label"] for e in train}}
    summary = {
        "accuracy_before": before,
        "accuracy_after": after,
        "train_labels": labels,
        "steps": trainer.state.global_step,
        "seconds": time.perf_counter() - start,
    }
    (out / "sft_summary.json").write_text(json.dumps(summary, indent=1))
    print(
        f"saved {out} ({summary['seconds']:.0f}s); RLPF from it: python -m rl.train --config rl/configs/tiny.yaml --model_name_or_path {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
