"""SFT, then RLPF, of the manager's decision head (:mod:`agent.manager`) on cached decisions.

The paper's RLPF is REINFORCE with a moving-average baseline over the manager's decisions, with
reward R = lambda * HIT + (1 - lambda) * BLEU. Rolling the graph out per update costs about 18 s here,
so the rewards are cached instead: :mod:`rl.decisions` ran every expert once per training context, so
the reward of every action (a sub-task, and for recommendation an expert) is a table lookup. Actions
are *sampled* from the policy, the baseline b(S) is kept per sub-task, and an update costs
milliseconds. :class:`ManagerTrainer` subclasses transformers' ``Trainer`` (optimizer, scheduler, logging; what
TRL's trainers are built on) like :class:`rl.trainer.RLPFTrainer`; ``phase="sft"``
fits the detection head to the corpus labels by cross-entropy, ``phase="rlpf"`` is equation 5.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer

from agent.manager import MATCH_FIX, SUBTASK_NAMES, ManagerHead, blend_weights
from crsdata.metrics import compare_paired, group_folds
from rl.baseline import MovingAverageBaseline
from rl.config import RLPFBaseConfig
from rl.reward import RewardFunc, bleu_reward, hit_reward, weighted_reward
from tools.fusion import fuse_rankings
from tools.subtasks import ELICITATION, RECOMMENDATION

REC = SUBTASK_NAMES.index(RECOMMENDATION)
ELICIT = SUBTASK_NAMES.index(ELICITATION)


@dataclass
class ManagerConfig(RLPFBaseConfig):
    """Training arguments of the decision head: transformers' plus RLPF's own. Defaults train in seconds on a CPU."""

    sft_epochs: float = field(default=20, metadata={"help": "epochs of supervised detection"})
    sft_also: str = field(
        default="",
        metadata={"help": "comma-separated other datasets whose training decisions join SFT (their sub-task labels only; "
                  "build them first with `python -m rl.decisions --dataset <name> --splits train`)"},
    )  # fmt: skip
    rl_epochs: float = field(default=20, metadata={"help": "epochs of RLPF on cached rewards (0: SFT only)"})
    rl_learning_rate: float = field(default=3e-4, metadata={"help": "learning rate of RLPF"})
    kl_beta: float = field(
        default=1.0, metadata={"help": "RLPF: weight of the KL divergence of detection from the SFT policy (TRL's beta)"}
    )
    rl_split: str = field(
        default="valid", metadata={"help": "split whose cached rewards RLPF learns from: valid (no expert trained on it) or train"}
    )
    calibrate_on: str = field(
        default="accuracy",
        metadata={"help": "what the detection offsets maximise on validation after training: accuracy (of the labels) or reward (RLPF's)"},
    )
    calibrate_min_labels: int = field(
        default=30,
        metadata={"help": "a sub-task's detection offset is calibrated only if validation labels it this often (else it stays 0)"},
    )
    sim_rounds: int = field(
        default=0, metadata={"help": "rounds of RLPF on simulated conversations after cached RLPF (0: none; rl.episodes)"}
    )
    sim_dialogues: int = field(default=100, metadata={"help": "simulated conversations per round (sampled from sim_split)"})
    sim_eval_dialogues: int = field(default=100, metadata={"help": "held-out conversations for the greedy success before and after"})
    sim_split: str = field(default="valid", metadata={"help": "split whose dialogues the simulated users start from"})
    sim_turns: int = field(default=5, metadata={"help": "system turns per simulated conversation"})
    sim_feedback: str = field(default="plain,reason", metadata={"help": "rejection styles of the simulated users, taking turns"})
    sim_curious: float = field(
        default=0.3, metadata={"help": "share of wrong recommendations the simulated user asks about (why, who) before rejecting"}
    )
    sim_opening: bool = field(default=False, metadata={"help": "also learn the opening decision of each conversation (a corpus turn)"})
    sim_learning_rate: float = field(default=1e-3, metadata={"help": "learning rate of RLPF on conversations"})
    sim_kl_beta: float = field(
        default=1.0, metadata={"help": "conversations: weight of the KL of detection from the corpus-trained head on corpus turns"}
    )
    sim_kl_split: str = field(
        default="train",
        metadata={"help": "corpus decisions the KL is taken on: train (with the templated why/who follow-ups) or valid"},
    )
    sim_batch_size: int = field(default=25, metadata={"help": "conversations per update"})
    sim_rollouts: int = field(
        default=1,
        metadata={"help": "conversations per dialogue in a round (sim_dialogues in all); above 1, each is compared with the mean of "
                  "the others of its dialogue (TRL's RLOO baseline) instead of the moving average"},
    )  # fmt: skip
    sim_branch: bool = field(
        default=False,
        metadata={"help": "play each dialogue greedily and again with one later turn's sub-task switched, and credit that decision "
                  "with the difference (rl.episodes.play_branches) instead of sampling whole conversations"},
    )  # fmt: skip
    hidden: int = field(default=256, metadata={"help": "width of the head's trunk"})
    dropout: float = field(default=0.2, metadata={"help": "dropout of the head"})
    per_device_train_batch_size: int = 64
    learning_rate: float = 1e-3
    logging_steps: float = 20
    disable_tqdm: bool = True


@dataclass
class DecisionTensors:
    """One split's decisions as tensors. Actions: every sub-task but recommendation, then recommendation with each expert."""

    ids: list[str]
    llm: torch.Tensor
    state: torch.Tensor
    labels: torch.Tensor
    rewards: torch.Tensor  # [n, actions]
    hits: dict[int, torch.Tensor]  # k -> [n, experts, max targets] per-target HIT, padded with NaN
    experts: list[str]
    actions: list[tuple[int, int]]  # (sub-task index, expert index or -1)
    is_sample: torch.Tensor
    rankings: list[list[list[str]]]  # [n][experts]: each expert's cached top-50 (empty where no targets)
    targets: list[list[str]]  # [n]: the distinct target items

    def __len__(self) -> int:
        return len(self.ids)


def actions_of(experts: list[str]) -> list[tuple[int, int]]:
    """The joint actions of detection and matching."""
    return [(i, -1) for i in range(len(SUBTASK_NAMES)) if i != REC] + [(REC, e) for e in range(len(experts))]


def decision_tensors(
    rows: list[dict[str, Any]],
    feats: dict[str, Any],
    experts: list[str],
    lam: float = 0.5,
    k: int = 10,
    rewards: tuple[list[RewardFunc], list[float]] | None = None,
) -> DecisionTensors:
    """Align decision rows with their cached features and tabulate every action's reward (``rewards``: the
    functions and weights, :meth:`rl.config.RLPFBaseConfig.rewards`; default the paper's, lam*HIT + (1-lam)*BLEU)."""
    index = {i: n for n, i in enumerate(feats["ids"])}
    missing = [r["id"] for r in rows if r["id"] not in index]
    if missing:
        raise ValueError(
            f"{len(missing)} decision rows have no cached features (first: {missing[0]}); rebuild with `python -m rl.decisions --force true`"
        )
    order = torch.tensor([index[r["id"]] for r in rows], dtype=torch.long)
    actions = actions_of(experts)
    completions, ranked, targets, refs = [], [], [], []
    for r in rows:
        for s, e in actions:
            key = f"{RECOMMENDATION}:{experts[e]}" if e >= 0 else SUBTASK_NAMES[s]
            completions.append(r["responses"].get(key, ""))
            ranked.append(r["rankings"].get(experts[e], []) if e >= 0 else [])
            targets.append(r["targets"])
            refs.append(r["reference"])
    funcs, weights = rewards or ([hit_reward, bleu_reward], [lam, 1 - lam])
    flat = weighted_reward(funcs, weights, [None] * len(completions), completions, ranked=ranked, targets=targets, references=refs, k=k)
    width = max([len(dict.fromkeys(r["targets"])) for r in rows] + [1])
    hits = {}
    for kk in (10, 50):
        t = torch.full((len(rows), len(experts), width), float("nan"))
        for n, r in enumerate(rows):
            for e, name in enumerate(experts):
                rank = r["rankings"].get(name, [])
                for j, tgt in enumerate(dict.fromkeys(r["targets"])):
                    t[n, e, j] = float(tgt in rank[:kk])
        hits[kk] = t
    return DecisionTensors(
        ids=[r["id"] for r in rows],
        llm=feats["llm"][order].float(),
        state=feats["state"][order].float(),
        labels=torch.tensor([SUBTASK_NAMES.index(r["label"]) for r in rows]),
        rewards=torch.tensor(flat).view(len(rows), len(actions)),
        hits=hits,
        experts=experts,
        actions=actions,
        is_sample=torch.tensor([bool(r["is_sample"]) for r in rows]),
        rankings=[[list(r["rankings"].get(name, [])) for name in experts] for r in rows],
        targets=[list(dict.fromkeys(r["targets"])) for r in rows],
    )


def action_logprobs(det: torch.Tensor, match: torch.Tensor, actions: list[tuple[int, int]]) -> torch.Tensor:
    """log pi(a) of every joint action: log P(sub-task) (+ log P(expert | recommendation))."""
    ld, lm = torch.log_softmax(det, -1), torch.log_softmax(match, -1)
    cols = [ld[:, s] + (lm[:, e] if e >= 0 else 0.0) for s, e in actions]
    return torch.stack(cols, dim=-1)


class _Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, int]:
        return {"row": i}


def collate_rows(feats: list[dict[str, int]]) -> dict[str, torch.Tensor]:
    """The batch of a :class:`_Rows` dataset: the row indices, as a tensor."""
    return {"rows": torch.tensor([f["row"] for f in feats])}


def detection_kl(det: torch.Tensor, reference: ManagerHead, llm: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """KL(reference || current) of detection on these inputs, averaged: TRL's penalty for drifting from a reference policy."""
    with torch.no_grad():
        ref = torch.log_softmax(reference(llm, state)[0], -1)
    return (ref.exp() * (ref - torch.log_softmax(det, -1))).sum(-1).mean()


class ManagerTrainer(Trainer):
    """Supervised detection (``phase="sft"``) or RLPF over sampled joint actions (``phase="rlpf"``)."""

    def __init__(
        self, head: ManagerHead, args: ManagerConfig, data: DecisionTensors, phase: str, reference: ManagerHead | None = None
    ) -> None:
        if phase not in ("sft", "rlpf"):
            raise ValueError(f"phase must be sft or rlpf, got {phase!r}")
        self.data, self.phase, self.reference = data, phase, reference
        self.baseline = MovingAverageBaseline(args.baseline_beta)
        self.history: list[dict[str, Any]] = []
        self._pending: list[dict[str, float]] = []
        self._generator = torch.Generator().manual_seed(args.seed)
        super().__init__(
            model=head,
            args=args,
            train_dataset=_Rows(len(data)),
            data_collator=collate_rows,
        )

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        rows = inputs["rows"].cpu()
        d = self.data
        det, match = model(d.llm[rows], d.state[rows])
        if self.phase == "sft":
            loss = torch.nn.functional.cross_entropy(det, d.labels[rows])
            self._pending.append({"loss_sft": float(loss.detach()), "accuracy": float((det.argmax(-1) == d.labels[rows]).float().mean())})
        else:
            logp = action_logprobs(det, match, d.actions)
            with torch.no_grad():
                sampled = torch.multinomial(logp.exp(), 1, generator=self._generator).squeeze(1)  # sample, never greedy
            reward = d.rewards[rows, sampled]
            subtasks = [d.actions[int(a)][0] for a in sampled]
            # b(S) is kept per sub-task S of the context (its corpus label), not of the sampled action:
            # a baseline that depends on the action would bias the gradient and cancel the signal
            # that tells one sub-task from another.
            keys = [SUBTASK_NAMES[int(x)] for x in d.labels[rows]]
            base = torch.tensor([self.baseline.value(k) for k in keys])
            for k, r in zip(keys, reward.tolist(), strict=True):
                self.baseline.update(k, r)
            chosen = logp.gather(1, sampled[:, None]).squeeze(1)
            loss = -((reward - base) * chosen).mean()
            beta = float(getattr(self.args, "kl_beta", 0.0))
            if self.reference is not None and beta > 0:  # stay near the SFT detection, as TRL's KL penalty does
                loss = loss + beta * detection_kl(det, self.reference, d.llm[rows], d.state[rows])
            self._pending.append(
                {
                    "reward": float(reward.mean()),
                    "baseline": float(base.mean()),
                    "recommend_share": float((torch.tensor(subtasks) == REC).float().mean()),
                }
            )
        return (loss, {}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._pending:
            for key in self._pending[0]:
                logs[key] = statistics.mean(p[key] for p in self._pending)
            self._pending = []
        if "loss" in logs:
            self.history.append({"phase": self.phase, "step": self.state.global_step, **logs})
        super().log(logs, start_time)


@dataclass
class Decisions:
    """What a manager (or a baseline) chose on a split: a sub-task and an expert per row, and where the
    experts are blended, each expert's share ``[n, experts]`` (``None``: the chosen expert alone)."""

    subtask: torch.Tensor
    expert: torch.Tensor
    weights: torch.Tensor | None = None


def greedy(head: ManagerHead, data: DecisionTensors, blend: bool = True) -> Decisions:
    """The head's decisions as the graph makes them: the argmax sub-task, and the matching
    distribution's argmax expert, blended with the others by :func:`agent.manager.blend_weights` when
    the head's ``blend_temperature`` is above 0 (``blend=False``: the argmax expert alone)."""
    head.eval()
    with torch.no_grad():
        det, match = head(data.llm, data.state)
    temperature = float(head.blend_temperature) if blend else 0.0
    weights = blend_weights(torch.log_softmax(match, -1), temperature) if temperature > 0 else None
    return Decisions(det.argmax(-1), match.argmax(-1), weights)


def fixed(data: DecisionTensors, subtask: int, expert: int) -> Decisions:
    """The same decision on every row."""
    n = len(data)
    return Decisions(torch.full((n,), subtask), torch.full((n,), expert))


def best_expert(data: DecisionTensors, k: int = 10) -> int:
    """The expert with the highest HIT@``k`` on ``data``'s target rows when it recommends on every row."""
    return max(range(len(data.experts)), key=lambda e: float(target_hits(fixed(data, REC, e), data, k).mean()))


def expected_reward(decisions: Decisions, data: DecisionTensors) -> float:
    """Mean cached reward of the decisions."""
    idx = [data.actions.index((int(s), int(e) if int(s) == REC else -1)) for s, e in zip(decisions.subtask, decisions.expert, strict=True)]
    return float(data.rewards[torch.arange(len(data)), torch.tensor(idx)].mean())


def target_hits(decisions: Decisions, data: DecisionTensors, k: int) -> torch.Tensor:
    """Per (sample row, target) HIT@k of the decisions, CRSLab's rows (0 where the manager did not recommend)."""
    rows = torch.nonzero(data.is_sample).squeeze(1)
    out = []
    for n in rows.tolist():
        if decisions.weights is None:
            h = data.hits[k][n, int(decisions.expert[n])]
            h = h[~torch.isnan(h)]
        else:
            top = set(fuse_rankings(data.rankings[n], decisions.weights[n].tolist())[:k])
            h = torch.tensor([float(t in top) for t in data.targets[n]])
        out.append(h if int(decisions.subtask[n]) == REC else torch.zeros_like(h))
    return torch.cat(out) if out else torch.zeros(0)


OFFSETS = tuple(i / 4 for i in range(-12, 13))


CALIBRATION_OBJECTIVES = ("accuracy", "reward")


def calibrate_detection(head: ManagerHead, data: DecisionTensors, objective: str = "accuracy", grid: tuple[float, ...] = OFFSETS,
                        min_labels: int = 0) -> float:  # fmt: skip
    """Set the detection head's per-sub-task logit offsets to maximise ``objective`` on ``data``
    (coordinate ascent over a grid, two sweeps): the usual recalibration of a classifier's priors on
    held-out data. Returns the objective reached.

    Args:
        head: The trained head; its ``det_bias`` is overwritten.
        data: Held-out decisions.
        objective: ``"accuracy"`` of the sub-task labels, or ``"reward"``: the mean cached RLPF reward of
            the greedy joint decision (the matching head's expert when it recommends). Accuracy alone
            undoes what RLPF learned where the labels call a rewarding recommendation "elicitation"
            (INSPIRED labels most of its recommendation turns so).
        grid: The offsets tried for each sub-task.
        min_labels: Sub-tasks that ``data`` labels fewer times keep offset 0. An offset fitted on a
            handful of labels only learns never to choose the sub-task: ReDial's validation split labels
            one turn explanation and twelve detail search, and accuracy offsets of -3 and -2 on them
            bought .0007 of test accuracy and lost "why that one?" and "Who is the director of that
            one?" in conversation.
    """
    if objective not in CALIBRATION_OBJECTIVES:
        raise ValueError(f"calibrate_on must be one of {', '.join(CALIBRATION_OBJECTIVES)}, not {objective!r}")
    head.eval()
    with torch.no_grad():
        det, match = head(data.llm, data.state)
    det = det - head.det_bias  # the raw logits
    experts = match.argmax(-1)
    bias = torch.zeros(det.shape[1])

    def score(b: torch.Tensor) -> float:
        subtask = (det + b).argmax(-1)
        if objective == "accuracy":
            return float((subtask == data.labels).float().mean())
        return expected_reward(Decisions(subtask, experts), data)

    counts = torch.bincount(data.labels, minlength=det.shape[1])
    tuned = [c for c in range(1, det.shape[1]) if int(counts[c]) >= min_labels]  # offsets are relative to the first sub-task
    best = score(bias)
    for _ in range(2):
        for c in tuned:
            for value in grid:
                trial = bias.clone()
                trial[c] = value
                if (got := score(trial)) > best + 1e-9:
                    best, bias = got, trial
    head.det_bias.copy_(bias)
    return best


BLEND_TEMPERATURES = (0.0, 0.5, 1.0, 2.0, 4.0)


def calibrate_blend(head: ManagerHead, data: DecisionTensors, grid: tuple[float, ...] = BLEND_TEMPERATURES, k: int = 10) -> float:
    """Set the head's ``blend_temperature`` to the value of ``grid`` whose blend of the experts' rankings
    (:func:`agent.manager.blend_weights`) reaches the highest HIT@``k`` on ``data``'s target rows, every
    row recommended; ties go to the lower temperature (0, one expert, is the paper's matching).
    Returns that HIT@k.

    Why blend: the matching head's choice of one expert per turn does not beat the best expert (a
    router fitted on the test split itself does not either), but the experts are complementary (the
    per-turn oracle is 44% above the best one); weighting their rankings by the head's confidence in
    each uses that, and 0 stays in the grid so that a head whose blend does not help keeps picking.
    """
    head.eval()
    with torch.no_grad():
        _, match = head(data.llm, data.state)
    logp = torch.log_softmax(match, -1)
    every = torch.full((len(data),), REC)
    best_t, best = 0.0, -1.0
    for t in grid:
        got = float(target_hits(Decisions(every, logp.argmax(-1), blend_weights(logp, t) if t > 0 else None), data, k).mean())
        if got > best + 1e-9:
            best_t, best = t, got
    head.blend_temperature.fill_(best_t)
    return best


def subset(data: DecisionTensors, rows: list[int]) -> DecisionTensors:
    """The decisions of ``rows`` only."""
    index = torch.tensor(rows, dtype=torch.long)
    return DecisionTensors(
        ids=[data.ids[i] for i in rows], llm=data.llm[index], state=data.state[index], labels=data.labels[index],
        rewards=data.rewards[index], hits={k: v[index] for k, v in data.hits.items()}, experts=data.experts,
        actions=data.actions, is_sample=data.is_sample[index], rankings=[data.rankings[i] for i in rows],
        targets=[data.targets[i] for i in rows],
    )  # fmt: skip


def concat(parts: list[DecisionTensors]) -> DecisionTensors:
    """The decisions of ``parts`` one after another (they must offer the same experts)."""
    if len({tuple(p.experts) for p in parts}) != 1:
        raise ValueError(f"decisions of different experts cannot be joined: {[p.experts for p in parts]}")
    width = max(next(iter(p.hits.values())).shape[-1] for p in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=float("nan"))

    return DecisionTensors(
        ids=[i for p in parts for i in p.ids], llm=torch.cat([p.llm for p in parts]), state=torch.cat([p.state for p in parts]),
        labels=torch.cat([p.labels for p in parts]), rewards=torch.cat([p.rewards for p in parts]),
        hits={k: torch.cat([pad(p.hits[k]) for p in parts]) for k in parts[0].hits}, experts=parts[0].experts,
        actions=parts[0].actions, is_sample=torch.cat([p.is_sample for p in parts]),
        rankings=[r for p in parts for r in p.rankings], targets=[t for p in parts for t in p.targets],
    )  # fmt: skip


def run_phase(head: ManagerHead, cfg: ManagerConfig, data: DecisionTensors, phase: str,
              reference: ManagerHead | None = None) -> ManagerTrainer:  # fmt: skip
    """Train ``head`` in place for one phase (``sft``: the config's ``sft_epochs`` at ``learning_rate``;
    ``rlpf``: ``rl_epochs`` at ``rl_learning_rate``); returns the trainer (its ``history``)."""
    import dataclasses
    import tempfile

    epochs, lr = (cfg.sft_epochs, cfg.learning_rate) if phase == "sft" else (cfg.rl_epochs, cfg.rl_learning_rate)
    scratch = tempfile.mkdtemp(prefix=f"llmcrs-{phase}-")  # the Trainer's own folder; nothing of it is kept
    args = dataclasses.replace(cfg, num_train_epochs=epochs, learning_rate=lr, output_dir=scratch)
    trainer = ManagerTrainer(head, args, data, phase, reference=reference)
    trainer.train()
    return trainer


def guard_matching(head: ManagerHead, sft: ManagerHead, cfg: ManagerConfig, data: DecisionTensors, folds: int = 5,
                   alpha: float = 0.05) -> dict[str, Any]:  # fmt: skip
    """Keep the learned matching only where it beats the best single expert on turns it did not learn from.

    RLPF learns matching from the validation split, a few hundred turns with targets (276 on ReDial),
    and a matching head can fit them turn by turn: on ReDial it sent 364 of 3,255 test recommendations
    to KBRD and lost .0065 HIT@10 to the reranker alone, while on validation it was above it. So the
    learning is cross-fitted: for each of ``folds`` folds of ``data`` (whole dialogues), a copy of
    ``sft`` (the SFT head before calibration) is trained by cached RLPF on the other folds, and its
    matching is scored on the held-out fold (every row recommended) against the expert that is best
    on the other folds. Unless the learned matching wins (one-sided paired t-test p < ``alpha``, as
    an expert must beat popularity to be offered), ``head``'s matching is fixed to the expert that is
    best on all of ``data`` (``match_bias``: +:data:`agent.manager.MATCH_FIX` on it, so neither
    greedy matching nor the blend picks another). The paper's model matching by descriptions is
    unchanged for prompted managers; this is a guard on what the trained head learned.

    Returns:
        The out-of-fold HIT@10 of each policy, the test's p-value and the expert fixed (``None``: learned).
    """
    import copy

    fold_of = group_folds([i.rsplit("/", 1)[0] for i in data.ids], folds)  # ids are dataset/split/dialogue/turn
    learned, constant = [], []
    for f in range(folds):
        inside = [i for i, g in enumerate(fold_of) if g != f]
        held = [i for i, g in enumerate(fold_of) if g == f]
        if not held or not inside:
            continue
        fit, out = subset(data, inside), subset(data, held)
        model = copy.deepcopy(sft).train()
        run_phase(model, cfg, fit, "rlpf", reference=copy.deepcopy(sft).eval())
        chosen = greedy(model, out, blend=False).expert
        learned += target_hits(Decisions(torch.full((len(out),), REC), chosen), out, 10).tolist()
        constant += target_hits(fixed(out, REC, best_expert(fit)), out, 10).tolist()
    test = compare_paired(learned, constant) if learned else None
    report: dict[str, Any] = {
        "matching_oof_hit@10_learned": sum(learned) / max(1, len(learned)),
        "matching_oof_hit@10_best_expert": sum(constant) / max(1, len(constant)),
        "matching_oof_rows": len(learned),
        "matching_oof_p": test.ttest_p if test else 1.0,
        "matching_fixed": None,
    }
    head.match_bias.zero_()
    if test is None or test.ttest_p >= alpha:
        best = best_expert(data)
        head.match_bias[best] = MATCH_FIX
        report["matching_fixed"] = data.experts[best]
    return report


@dataclass
class ManagerTraining:
    """What :func:`train_manager` gives back besides the trained head (trained in place)."""

    report: dict[str, Any]  # validation figures after each phase (``valid_<metric>_<phase>``) and the blend temperature
    history: list[dict[str, Any]]  # the trainer's logs, each tagged with its phase
    sft_reference: ManagerHead | None = None  # the head after SFT, uncalibrated: RLPF's KL reference, guard_matching's start
    sft_head: ManagerHead | None = None  # the head after SFT, calibrated like the full one: the w/o RL ablation

    def sft_report(self) -> dict[str, Any]:
        """The figures of the SFT-only head (what its saved ``manager.json`` may say about it)."""
        return {k: v for k, v in self.report.items() if k.endswith(("_init", "_sft", "_sft_calibrated"))}


def train_manager(head: ManagerHead, cfg: ManagerConfig, train: DecisionTensors, valid: DecisionTensors,
                  rl_data: DecisionTensors | None = None, sft_also: Sequence[DecisionTensors] = ()) -> ManagerTraining:  # fmt: skip
    """SFT on ``train`` (and ``sft_also``, other datasets' labelled decisions), then RLPF on ``rl_data``
    (default ``train``), then the detection offsets calibrated on ``valid``; returns the validation
    figures after each phase, the training history and the SFT-only head (calibrated the same way, for
    the w/o RL ablation).

    Why other datasets may join SFT: a sub-task is the same act in every movie corpus and the labels come
    from one function (:func:`agent.heuristics.label_turn`), while INSPIRED's own training split is 820
    turns. The offsets are still calibrated on this dataset's ``valid`` (its own mix of sub-tasks), and
    ``python -m eval manager`` then also holds the head to TF-IDF trained on the same pooled turns.

    Why RLPF may need other data than SFT: the learned experts' rankings of their own training
    dialogues are optimistic (KBRD has seen those targets), so a matching policy rewarded on them learns
    to over-trust the learned experts; rewards from dialogues no expert trained on are honest.
    """
    import copy

    sft_data = concat([train, *sft_also]) if sft_also else train
    head.fit_scaler(sft_data.llm)
    out = ManagerTraining(report={}, history=[])

    def measure(tag: str, model: ManagerHead) -> None:
        dec = greedy(model, valid)
        out.report[f"valid_accuracy_{tag}"] = float((dec.subtask == valid.labels).float().mean())
        out.report[f"valid_reward_{tag}"] = expected_reward(dec, valid)
        out.report[f"valid_hit@10_{tag}"] = float(target_hits(dec, valid, 10).mean())

    measure("init", head)
    for phase, epochs, data in (("sft", cfg.sft_epochs, sft_data), ("rlpf", cfg.rl_epochs, rl_data or train)):
        if epochs <= 0:
            continue
        out.history += run_phase(head, cfg, data, phase, reference=out.sft_reference if phase == "rlpf" else None).history
        measure(phase, head)
        if phase == "sft":
            out.sft_reference = copy.deepcopy(head).eval()
            sft = copy.deepcopy(head).eval()
            calibrate_detection(sft, valid, cfg.calibrate_on, min_labels=cfg.calibrate_min_labels)
            calibrate_blend(sft, valid)
            measure("sft_calibrated", sft)
            out.sft_head = sft
    calibrate_detection(head, valid, cfg.calibrate_on, min_labels=cfg.calibrate_min_labels)
    calibrate_blend(head, valid)
    out.report["blend_temperature"] = float(head.blend_temperature)
    measure("final", head)
    head.eval()
    return out
