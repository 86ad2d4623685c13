"""RLPF: reward, baseline, policy log-probabilities, a two-step training run on a tiny offline model."""

from __future__ import annotations

import json

import pytest
import torch

from crsdata.metrics import bleu_crslab
from rl.baseline import MovingAverageBaseline
from rl.reward import crs_reward, hit


def test_reward_by_hand():
    # HIT@10 = 1, BLEU-1: hyp "you might like heat" vs ref "you will like heat": 3/4 unigrams, same length
    r = crs_reward([None], ["you might like heat"], ranked=[["x", "heat"]], targets=[["heat"]], references=["you will like heat"], lam=0.3)
    assert r == [pytest.approx(0.3 * 1 + 0.7 * 0.75)]
    assert bleu_crslab(["you might like heat"], ["you will like heat"], 1) == pytest.approx(0.75)
    # no recommendation made -> HIT 0; lambda 1 -> BLEU ignored
    assert crs_reward([None], ["anything"], ranked=[[]], targets=[["heat"]], references=["anything"], lam=1.0) == [0.0]
    assert hit(["a"] * 10 + ["heat"], ["heat"], k=10) == 0.0
    with pytest.raises(ValueError, match="lambda"):
        crs_reward([None], ["a"], ranked=[[]], targets=[[]], references=["a"], lam=1.5)


def test_baseline_is_a_moving_average_per_subtask():
    b = MovingAverageBaseline(beta=0.9)
    assert b.update("recommendation", 1.0) == 1.0
    assert b.update("recommendation", 0.0) == pytest.approx(0.9)
    assert b.update("recommendation", 0.0) == pytest.approx(0.81)
    assert b.value("explanation") == 0.0
    b.update("explanation", 0.4)
    assert b.value("explanation") == 0.4 and b.value("recommendation") == pytest.approx(0.81)


@pytest.mark.integration
def test_trajectory_logprob_matches_its_parts(tiny_model_dir, real_root):
    from langchain_core.messages import HumanMessage

    from agent.context import Context
    from agent.graph import build_crs_graph
    from agent.llm import load_chat_model
    from crsdata.loaders import load_samples
    from rl.rollout import rollout, trajectory_logprob

    policy = load_chat_model(str(tiny_model_dir))
    g = build_crs_graph(model=policy, data_root=str(real_root), n_demos=1, manager="prompt")
    state = rollout(g, load_samples("redial", "train", real_root, limit=1)[0], Context(max_new_tokens=4))
    traj = state["trajectory"]
    with torch.no_grad():
        total = trajectory_logprob(policy, traj)
        det = traj[0]
        parts = policy.choice_logprobs([HumanMessage(det["prompt"])], det["options"], prefix=det["prefix"], suffix='"}')[
            det["options"].index(det["parsed"])
        ]
        resp = traj[-1]
        if resp.get("completion"):
            parts = parts + policy.completion_logprob([HumanMessage(resp["prompt"])], resp["completion"], prefix=resp.get("prefix", ""))
        match = traj[1]
        if match["method"] == "constrained":
            parts = (
                parts
                + policy.choice_logprobs([HumanMessage(match["prompt"])], match["options"], prefix=match["prefix"], suffix='"}')[
                    match["options"].index(match["parsed"])
                ]
            )
    assert total == pytest.approx(float(parts), abs=1e-4)
    assert total < 0


@pytest.mark.integration
def test_two_training_steps_change_the_weights_and_load_back(tiny_model_dir, real_root, tmp_path):
    from transformers import AutoModelForCausalLM

    from agent.graph import build_crs_graph
    from rl.train import main

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    out = tmp_path / "rl"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"policy: full\nmodel_name_or_path: {tiny_model_dir}\ndataset: redial\ndata_root: {real_root}\ntrain_contexts: 2\nvalid_contexts: 2\n"
        f"output_dir: {out}\nmax_steps: 2\nlearning_rate: 0.05\nlam: 0.0\ntarget_length: 4\nn_demos: 1\nlogging_steps: 1\nseed: 0\nreport_to: none\n"
    )
    assert main(["--config", str(cfg)]) == 0
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert any(not torch.allclose(before[k], after[k]) for k in before)
    log = [json.loads(line) for line in (out / "rlpf_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all({"reward", "baseline", "loss"} <= set(row) for row in log)
    summary = json.loads((out / "rlpf_summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["after"]["mean_reward"] <= 1.0
    assert (out / "reward_curve.png").stat().st_size > 1000
    # the fine-tuned folder drives the graph
    from langchain_core.messages import HumanMessage

    from agent.context import Context

    g = build_crs_graph(model=str(out), data_root=str(real_root), n_demos=0, manager="prompt")
    res = g.invoke({"messages": [HumanMessage("I like horror movies")]}, context=Context(max_new_tokens=4))
    assert res["trajectory"][0]["method"] == "constrained"


def test_sft_examples_are_labelled_detection_prompts(real_root):
    from rl.sft import detection_examples
    from tools.subtasks import SUBTASKS

    ex = detection_examples("redial", "valid", 20, 1, str(real_root), seed=0)
    assert len(ex) == 20
    for e in ex:
        assert e["label"] in SUBTASKS and json.loads(e["completion"]) == {"name": e["label"]}
        assert "#1 Sub-task Detection Stage" in e["prompt"] and "Now the dialogue context is:" in e["prompt"]
    assert len({e["label"] for e in ex}) >= 2


@pytest.mark.integration
def test_sft_two_steps_on_the_tiny_model(tiny_model_dir, real_root, tmp_path):
    from rl.sft import main

    out = tmp_path / "sft"
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(
        f"model_name_or_path: {tiny_model_dir}\ndataset: redial\ndata_root: {real_root}\ntrain_examples: 8\nvalid_examples: 4\nn_demos: 0\n"
        f"output_dir: {out}\nmax_steps: 2\nper_device_train_batch_size: 2\nlearning_rate: 0.01\ncompletion_only_loss: true\nmax_length: 2048\n"
        "gradient_checkpointing: false\nbf16: false\nuse_cpu: true\nsave_strategy: 'no'\nreport_to: none\nlogging_steps: 1\n"
    )
    assert main(["--config", str(cfg)]) == 0
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["steps"] == 2 and 0.0 <= summary["accuracy_after"] <= 1.0
    assert (out / "model.safetensors").is_file()


def test_a_discarded_completion_contributes_no_logprob():
    from rl.rollout import trajectory_logprob

    class Stub:
        def choice_logprobs(self, messages, options, prefix="", suffix=""):
            return torch.log(torch.tensor([0.25, 0.75]))

        def completion_logprob(self, messages, completion, prefix=""):
            return torch.tensor(-5.0)

    det = {"stage": "detection", "method": "constrained", "prompt": "p", "options": ["a", "b"], "parsed": "b", "prefix": ""}
    kept = {"stage": "response", "method": "generated", "prompt": "p", "completion": "text", "fallback": False}
    discarded = {**kept, "fallback": True}  # the graph answered with the template instead
    assert float(trajectory_logprob(Stub(), [det, kept])) == pytest.approx(float(torch.log(torch.tensor(0.75))) - 5.0)
    assert float(trajectory_logprob(Stub(), [det, discarded])) == pytest.approx(float(torch.log(torch.tensor(0.75))))


def test_branch_pairs_and_several_rollouts_are_refused_together_before_anything_loads():
    """The shipped OpenDialKG config learns from branch pairs (greedy conversations); asking for rollouts
    on top would silently be ignored, so it is an error that names both fields."""
    from rl.train import main

    with pytest.raises(SystemExit, match="sim_branch.*sim_rollouts|sim_rollouts.*sim_branch"):
        main(["--config", "rl/configs/manager_opendialkg.yaml", "--sim_rollouts", "4"])


@pytest.mark.integration
def test_response_sft_trains_a_lora_adapter_that_lowers_the_loss_and_leaves_the_base_weights(tiny_model_dir, tmp_path):
    """SFT of the response stage with a LoRA adapter (TRL's SFTTrainer, peft via TRL's ModelConfig) on a small
    fixed set: the validation loss falls, the adapter's weights move and the base model's do not. With a
    learning rate of 0 (an adapter that is not updated) the loss would not move."""
    from trl import ModelConfig, SFTConfig

    from agent.llm import load_hf
    from rl.sft import train_sft

    rows = [{"prompt": f"Expert output: Heat (1995)\nAbout: a crime movie {i}", "completion": "You might like Heat (1995), a crime movie.", "label": "r"}
            for i in range(8)]  # fmt: skip
    model, tok = load_hf(tiny_model_dir)
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = SFTConfig(output_dir=str(tmp_path), max_steps=30, per_device_train_batch_size=4, learning_rate=5e-3, use_cpu=True, bf16=False,
                    report_to="none", save_strategy="no", logging_steps=4, max_length=128, completion_only_loss=True, seed=0)  # fmt: skip
    model_cfg = ModelConfig(use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0, lora_target_modules="all-linear")
    trainer, losses = train_sft(model, tok, cfg, model_cfg, rows, rows)
    assert losses["valid_loss_after"] < losses["valid_loss_before"] - 0.3
    lora = {n: p for n, p in trainer.model.named_parameters() if "lora_B" in n}
    assert lora and any(float(p.abs().sum()) > 0 for p in lora.values())  # lora_B starts at zero: it moved
    for name, p in trainer.model.named_parameters():
        if "lora_" not in name:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(p, base[key]), name  # the base model is untouched: one model in memory, the adapter beside it
    trainer.save_model(str(tmp_path / "adapter"))
    assert (tmp_path / "adapter" / "adapter_config.json").is_file() and not (tmp_path / "adapter" / "model.safetensors").exists()
