"""``python -m rl.sft --config rl/configs/sft_tiny.yaml``: supervised fine-tuning of the local LLM with
TRL's ``SFTTrainer``, on one of two stages (``task``):

* ``detection``: a short warm-start of the manager LLM before RLPF. Examples come from the training
  split: the detection prompt (Table 2 #1, with the graph's own demonstrations) of a recommender turn's
  context, and as completion the sub-task in schema form, labelled from the reference turn by
  :func:`agent.heuristics.label_turn` (which sees the reference response; the model only sees the
  context). The completion is exactly what constrained decoding scores (``{"name": "<sub-task>"}``).
  Prints the detection accuracy on validation contexts before and after.
* ``response``: the response stage (prompt #3 with the teacher-forced summary, the reference reply as
  completion; :mod:`rl.responses` builds the rows). Prints the validation loss before and after.

The model is TRL's ``ModelConfig`` (``model_name_or_path``, default the embedded model); ``use_peft: true``
trains a LoRA adapter (``lora_r``, ``lora_target_modules``, ...) instead of every weight, and the adapter
is what is saved (``rl/configs/reply_redial.yaml``).
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

    task: str = field(default="detection", metadata={"help": "detection (the manager's sub-task) or response (the reply from the summary)"})
    dataset: str = field(default="redial")
    data_root: str | None = field(default=None)
    train_examples: int = field(default=240)
    valid_examples: int = field(default=60)
    n_demos: int = field(default=2)
    lora_layers: int | None = field(
        default=None,
        metadata={"help": "with use_peft: the adapter on the last N layers only (backward stops below them: about 40 percent faster here)"},
    )


def detection_examples(dataset: str, split: str, n: int, n_demos: int, data_root: str | None, seed: int) -> list[dict[str, Any]]:
    """(prompt, completion, label) of recommender turns of a split, seeded sample of ``n``."""
    from agent.config import GraphConfig
    from agent.deciders import detection_prompt
    from agent.heuristics import label_turn
    from agent.resources import Resources
    from crsdata.loaders import load_dialogues
    from tools.dialogue import format_dialogue

    res = Resources(GraphConfig(dataset=dataset, data_root=data_root, n_demos=n_demos), tools=[])
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


def response_examples(dataset: str, split: str, n: int, data_root: str | None, seed: int) -> list[dict[str, Any]]:
    """(prompt, completion) of a split's response rows (:mod:`rl.responses`, built when missing), seeded sample of
    ``n``: the compact reply prompt the adapter reads in the graph, and the reference reply as
    :func:`rl.responses.sft_target` makes it (without the rows whose reference invents)."""
    from rl.responses import build, responses_path, sft_target

    path = responses_path(dataset, split)
    if not path.is_file():
        path = build(dataset, split, data_root)[0]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    random.Random(seed).shuffle(rows)
    out = [{"prompt": r["reply_prompt"], "completion": target, "label": r["subtask"]} for r in rows if (target := sft_target(r))]
    print(f"{split}: {len(out)} of {len(rows)} response rows claim nothing their prompt does not support", flush=True)
    return out[:n]


def as_conversations(examples: list[dict[str, Any]]) -> Any:
    """TRL's prompt-completion conversational format."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": e["prompt"]}], "completion": [{"role": "assistant", "content": e["completion"]}]}
            for e in examples
        ]
    )


def train_sft(
    model: Any, tok: Any, cfg: Any, model_cfg: Any, train: list[dict[str, Any]], valid: list[dict[str, Any]], lora_layers: int | None = None
) -> tuple[Any, dict[str, float]]:
    """SFT on ``train`` (a LoRA adapter when ``model_cfg.use_peft``, on the last ``lora_layers`` layers when
    given); the trainer, and the validation loss before and after."""
    from trl import SFTTrainer, get_peft_config

    peft_config = get_peft_config(model_cfg)
    if peft_config is not None and lora_layers:  # TRL's ModelConfig has no field for it
        n = int(model.config.num_hidden_layers)
        peft_config.layers_to_transform = list(range(max(0, n - lora_layers), n))  # type: ignore[attr-defined]
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=as_conversations(train), eval_dataset=as_conversations(valid),
                         processing_class=tok, peft_config=peft_config)  # fmt: skip
    before = float(trainer.evaluate()["eval_loss"])
    trainer.train()
    after = float(trainer.evaluate()["eval_loss"])
    return trainer, {"valid_loss_before": before, "valid_loss_after": after}


def write_reply_meta(out: Path, dataset: str, model: str, summary: dict[str, Any], argv: list[str] | None) -> None:
    """``reply.json`` beside a trained reply adapter: what it was trained on (the base weights' sha256, which
    :func:`agent.reply_adapter.use_reply_adapter` checks), its own sha256, its losses and the command."""
    from agent.llm import EMBEDDED_NAME, embedded_gguf_path, weights_sha256
    from agent.reply_adapter import adapter_sha256

    base = embedded_gguf_path() if model == "embedded" else Path(model)
    meta = {"dataset": dataset, "model": EMBEDDED_NAME if model == "embedded" else model, "model_sha256": weights_sha256(base),
            "sha256": adapter_sha256(out), "command": " ".join(["python -m rl.sft", *(argv if argv is not None else sys.argv[1:])]),
            **{k: summary[k] for k in ("valid_loss_before", "valid_loss_after", "steps", "seconds", "train_labels", "loss_curve")}}  # fmt: skip
    (out / "reply.json").write_text(json.dumps(meta, indent=1) + "\n")
    config = json.loads((out / "adapter_config.json").read_text())  # the base is the model's name, not this machine's path
    (out / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": meta["model"]}, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    from trl import ModelConfig, SFTConfig, TrlParser

    from rl.train import load_policy

    script, cfg, model_cfg = TrlParser((SFTScriptArguments, SFTConfig, ModelConfig)).parse_args_and_config(args=argv)  # type: ignore[arg-type]
    if script.task not in ("detection", "response"):
        raise SystemExit(f"unknown task {script.task!r}: detection or response")
    start = time.perf_counter()
    if script.task == "response":
        train = response_examples(script.dataset, "train", script.train_examples, script.data_root, cfg.seed)
        valid = response_examples(script.dataset, "valid", script.valid_examples, script.data_root, cfg.seed)
    else:
        train = detection_examples(script.dataset, "train", script.train_examples, script.n_demos, script.data_root, cfg.seed)
        valid = detection_examples(script.dataset, "valid", script.valid_examples, script.n_demos, script.data_root, cfg.seed)
    model, tok = load_policy(model_cfg.model_name_or_path or "embedded")
    figures: dict[str, float] = {}
    if script.task == "detection":
        figures["accuracy_before"] = detection_accuracy(model, tok, valid)
        print(f"detection accuracy on {len(valid)} validation turns before: {figures['accuracy_before']:.3f}", flush=True)
    trainer, losses = train_sft(model, tok, cfg, model_cfg, train, valid, script.lora_layers)
    figures.update(losses)
    if script.task == "detection":
        figures["accuracy_after"] = detection_accuracy(trainer.model, tok, valid)
        print(f"detection accuracy on {len(valid)} validation turns after:  {figures['accuracy_after']:.3f}", flush=True)
    print(
        f"validation loss on {len(valid)} {script.task} turns: {losses['valid_loss_before']:.4f} -> {losses['valid_loss_after']:.4f}",
        flush=True,
    )
    out = Path(cfg.output_dir)
    trainer.save_model(str(out))  # with use_peft: the adapter only
    labels = {lab: sum(e["label"] == lab for e in train) for lab in {e["label"] for e in train}}
    summary = {**figures, "task": script.task, "peft": bool(model_cfg.use_peft), "train_labels": labels,
               "steps": trainer.state.global_step, "seconds": time.perf_counter() - start,
               "loss_curve": [[h["step"], h["loss"]] for h in trainer.state.log_history if "loss" in h]}  # fmt: skip
    (out / "sft_summary.json").write_text(json.dumps(summary, indent=1))
    if script.task == "response" and model_cfg.use_peft:
        write_reply_meta(out, script.dataset, model_cfg.model_name_or_path or "embedded", summary, argv)
    print(f"saved {out} ({summary['seconds']:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
