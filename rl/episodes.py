"""RLPF on simulated conversations: the manager's decisions rewarded by how the conversation ends.

The cached RLPF of :mod:`rl.manager` rewards one decision on one corpus turn (lambda * HIT + (1 - lambda)
* BLEU). What it cannot see is what a decision does to the *next* turns: a question costs a turn now
and pays only if the answer makes a later recommendation hit. Corpus labels say little about that
(ReDial's recommenders rarely ask after a rejection), and the head learned from them recommends after
"I don't like them." again and again. This phase lets the head learn it from performance feedback:

* **Episodes.** The graph, deciding with the very head being trained (``build_crs_graph(manager=head)``)
  and *sampling* its decisions, talks with the attribute simulator of :mod:`sim.users` from
  dialogues of the validation split (no expert trained on them), half with plain rejections and half
  with a reason, for up to ``sim_turns`` turns. A share ``sim_curious`` of the wrong recommendations
  gets a follow-up question first ("Why would I like that?", "Who made it?"); the user leaves when it
  is not answered, so asking or recommending where the user asked *why* costs the whole dialogue.
* **Reward.** R = 1 when a target is among the top-k shown within the turns, else 0: the HIT of the
  conversation (lambda = 1; a simulated user has no reference response to score BLEU against). Every
  turn the conversation costs comes out of the same budget, so eliciting must pay for its turn.
  The opening decision (the reply to the real history, a corpus turn whose reference the cached phases
  already fit) is executed but not trained unless ``sim_opening``: what the conversations teach is what
  to do after a recommendation failed, not to question a user who asked for one.
* **Estimator.** REINFORCE with a moving-average baseline b (one per feedback style, as the paper keeps
  one per sub-task), or, with ``sim_rollouts`` > 1 conversations per dialogue, the mean reward of the
  other rollouts of the same dialogue (:func:`leave_one_out`, TRL's RLOO), or, with ``sim_branch``,
  counterfactual pairs (:func:`play_branches`): the greedy conversation and, for each later turn, the
  same conversation with that turn's sub-task switched, each pair crediting only the switched decision
  with the difference of the two ends. Most dialogues end the same whatever one decision does; a
  sampled conversation mixes that with all its decisions, a pair isolates it. loss = -(R - b) * sum_t
  log pi(a_t | s_t) over the head's executed decisions (a
  detection the graph overrode, e.g. a repeated answer, contributes nothing), plus ``sim_kl_beta`` times the
  KL divergence of detection from the head before this phase on corpus decisions (``sim_kl_split``: the
  training split, whose templated "why" and "who directed it" follow-ups anchor those turns), so the
  turn-level behaviour learned from the corpus stays. The anchor leaves out the corpus turns the
  conversations are there to teach (:func:`taught_by_conversations`: a reply to a recommendation that
  names no item and asks nothing, such as "I don't like them."), whose corpus label (mostly another
  recommendation) would pull against what the reward says; so openings, requests naming a liked item
  and questions can be held firmly without holding back what follows a rejection.

The LLM runs forward only (about 0.1-0.3 s a turn); its hidden states are taken from the head's input by
a forward hook, so an update costs milliseconds. Configured by the ``sim_*`` fields of
:class:`rl.manager.ManagerConfig`; run by ``python -m rl.train`` after SFT and cached RLPF.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import statistics
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer

from agent.config import GraphConfig
from agent.context import Context
from agent.manager import STATE_FEATURES, SUBTASK_NAMES, ManagerHead
from crsdata.schema import RecSample
from rl.baseline import MovingAverageBaseline
from rl.manager import ELICIT, REC, DecisionRows, DecisionTensors, ManagerConfig, collate_rows, detection_kl
from sim.dialogues import choose_dialogues, simulate
from sim.systems import GraphSystem, Prediction
from sim.users import AttributeSimulator


@dataclass
class Decision:
    """One executed decision of the head: its inputs, the options it chose among, and its choice."""

    llm: torch.Tensor
    state: torch.Tensor
    detection: bool  # True: a sub-task (over all of them); False: an expert (over ``options``)
    options: list[int]
    action: int  # index into the head's sub-tasks (detection) or experts (matching)


@dataclass
class Played:
    """One simulated conversation: its decisions, its reward and the feedback style of its user."""

    decisions: list[Decision]
    reward: float
    feedback: str
    turns: int
    dialogue: int | None = None  # which dialogue of the round (rollouts of one dialogue share it)


@dataclass
class _Recorder:
    """A conversational system that keeps, per turn, the graph's decision records and the head's inputs."""

    system: GraphSystem
    trace: list[tuple[torch.Tensor, torch.Tensor]]
    turns: list[tuple[list[dict[str, Any]], list[tuple[torch.Tensor, torch.Tensor]]]] = field(default_factory=list)
    name: str = "full"
    force: tuple[int, int] | None = None  # a turn (0: the opening) and the sub-task forced there (play_branches)

    def predict(self, sample: RecSample) -> Prediction:
        return self.system.predict(sample)

    def session(self, sample: RecSample) -> Callable[[str | None], Prediction]:
        turn = self.system.session(sample)

        def recorded(text: str | None) -> Prediction:
            start = len(self.trace)
            pred = turn(text)
            self.turns.append((pred.trajectory, self.trace[start:]))
            return pred

        return recorded


def executed_decisions(
    trajectory: list[dict[str, Any]], inputs: list[tuple[torch.Tensor, torch.Tensor]], head: ManagerHead
) -> list[Decision]:
    """The head's decisions of one turn that the graph executed, with the inputs the head read.

    Detection reads the turn's first head pass, matching its last (they are one pass when the dialogue
    and results are the same). A detection the graph overrode (its record carries an ``error``) or a
    decision without a head pass is left out: its log-probability must not take credit or blame.
    """
    out: list[Decision] = []
    for rec in trajectory:
        if rec.get("method") != "head" or not inputs or rec.get("error"):
            continue
        llm, state = inputs[0] if rec["stage"] == "detection" else inputs[-1]
        if rec["stage"] == "detection":
            out.append(Decision(llm, state, True, list(range(len(SUBTASK_NAMES))), SUBTASK_NAMES.index(rec["parsed"])))
        elif rec["stage"] == "matching":
            options = [head.experts.index(o) for o in rec["options"]]
            out.append(Decision(llm, state, False, options, head.experts.index(rec["parsed"])))
    return out


@contextmanager
def _acting(head: ManagerHead, model: Any, sample: bool) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """While the graph plays: the head's inputs of every pass (a forward hook) and its decisions sampled
    or greedy (``model.sample_choices``); both undone after."""
    trace: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = head.register_forward_hook(lambda _m, inputs, _o: trace.append((inputs[0][0].detach(), inputs[1][0].detach())))
    previous = bool(getattr(model, "sample_choices", False))
    model.sample_choices = sample
    try:
        yield trace
    finally:
        hook.remove()
        model.sample_choices = previous


def play(head: ManagerHead, model: Any, system: GraphSystem, dialogues: list[tuple[RecSample, Any]], feedback: list[str], turns: int,
         k: int, sample: bool = True, curious: float = 0.0, opening: bool = False, seed: int = 0, rollouts: int = 1) -> list[Played]:  # fmt: skip
    """Let the graph (built on ``model`` with ``head``) talk with a simulated user on each dialogue,
    ``rollouts`` times (each a separate conversation), the head's decisions sampled (``sample``) or
    greedy; ``feedback`` styles take turns by dialogue; ``curious`` users ask about wrong
    recommendations; the opening's decisions are kept if ``opening``."""
    played = []
    with _acting(head, model, sample) as trace:
        for n, (s, item) in enumerate(dialogues):
            style = feedback[n % len(feedback)]
            for j in range(rollouts):
                recorder = _Recorder(system, trace)
                user = AttributeSimulator(item, style, k, curious=curious, seed=seed + n * rollouts + j)
                ep = simulate(recorder, s, user, turns, k)
                learned = recorder.turns if opening else recorder.turns[1:]
                decisions = [d for traj, inputs in learned for d in executed_decisions(traj, inputs, head)]
                played.append(Played(decisions, float(ep.success_turn is not None), style, len(ep.turns), n))
                trace.clear()
    return played


def play_branches(head: ManagerHead, model: Any, system: GraphSystem, dialogues: list[tuple[RecSample, Any]], feedback: list[str],
                  turns: int, k: int, curious: float = 0.0, seed: int = 0) -> list[Played]:  # fmt: skip
    """Counterfactual pairs ("vine" rollouts): each dialogue is played greedily, then, for each of its
    turns after the opening, once more with that turn's sub-task switched (elicitation where the head
    recommended, recommendation where it did anything else) and greedy decisions elsewhere. Each pair
    shares a ``dialogue`` id and holds only the decision of the switched turn, so with the
    leave-one-out baseline (:func:`leave_one_out`) that decision is credited with how much better its
    conversation ended than the other one: one clean comparison per decision, where a sampled
    conversation mixes the effects of all of its decisions with how hard the dialogue is."""
    current: list[_Recorder] = []

    def force(_m: Any, _inputs: Any, out: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
        r = current[-1] if current else None
        if r is None or r.force is None or r.force[0] != len(r.turns):  # not the forced turn (being played, not yet recorded)
            return None
        switched = torch.full_like(out[0], -1e4)
        switched[..., r.force[1]] = 0.0
        return switched, out[1]

    def converse(n: int, at: tuple[int, int] | None, trace: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, list[list[Decision]]]:
        """Dialogue ``n`` played greedily (``at``: a turn and the sub-task forced there): its reward and each turn's detections."""
        (s, item), style = dialogues[n], feedback[n % len(feedback)]
        recorder = _Recorder(system, trace, force=at)
        current.append(recorder)
        try:
            ep = simulate(recorder, s, AttributeSimulator(item, style, k, curious=curious, seed=seed + n), turns, k)
        finally:
            current.pop()
        decided = [[d for d in executed_decisions(traj, inputs, head) if d.detection] for traj, inputs in recorder.turns]
        trace.clear()
        return float(ep.success_turn is not None), decided

    played: list[Played] = []
    with _acting(head, model, sample=False) as trace:
        forcing = head.register_forward_hook(force)  # after _acting's hook, which records the head's inputs
        try:
            for n in range(len(dialogues)):
                style = feedback[n % len(feedback)]
                reward, greedy = converse(n, None, trace)
                for t in range(1, len(greedy)):
                    if len(greedy[t]) != 1:  # the graph overrode the head's detection on this turn: nothing to compare
                        continue
                    other, switched = converse(n, (t, ELICIT if greedy[t][0].action == REC else REC), trace)
                    if len(switched) <= t or len(switched[t]) != 1:
                        continue
                    pair = len(played) // 2
                    played += [Played(greedy[t], reward, style, len(greedy), pair), Played(switched[t], other, style, len(switched), pair)]
        finally:
            forcing.remove()
    return played


def taught_by_conversations(state: torch.Tensor) -> torch.Tensor:
    """Which decision contexts (rows of :data:`agent.manager.STATE_FEATURES`) answer a recommendation
    without naming an item, asking why or asking about an attribute: what conversations teach, so
    the KL anchor leaves them out.

    >>> row = dict.fromkeys(STATE_FEATURES, 0.0)
    >>> rejection = {**row, "assistant_named_item": 1.0}
    >>> request = {**rejection, "items_in_last_user": 1 / 3}
    >>> taught_by_conversations(torch.tensor([[r[n] for n in STATE_FEATURES] for r in (row, rejection, request)])).tolist()
    [False, True, False]
    """
    if state.shape[-1] != len(STATE_FEATURES):
        raise ValueError(f"state rows have {state.shape[-1]} features, expected the {len(STATE_FEATURES)} of STATE_FEATURES")
    col = {n: i for i, n in enumerate(STATE_FEATURES)}
    taught = state[:, col["assistant_named_item"]] > 0
    for name in ("items_in_last_user", "why", "question", "attribute"):
        taught &= state[:, col[name]] == 0
    return taught


def leave_one_out(played: list[Played]) -> list[float]:
    """Each conversation's reward minus the mean reward of the other rollouts of its dialogue: the
    baseline of TRL's RLOO. A dialogue that every rollout wins (or loses) teaches nothing, so the
    variance that comes from how hard a dialogue is drops out; only what the decisions changed stays.

    >>> ep = lambda r, d: Played([], r, "plain", 1, d)
    >>> leave_one_out([ep(1.0, 0), ep(0.0, 0), ep(0.0, 0), ep(1.0, 1), ep(1.0, 1)])
    [1.0, -0.5, -0.5, 0.0, 0.0]
    """
    groups: dict[int | None, list[float]] = {}
    for p in played:
        groups.setdefault(p.dialogue, []).append(p.reward)
    if None in groups or any(len(g) < 2 for g in groups.values()):
        raise ValueError("the leave-one-out baseline needs at least two rollouts of every dialogue")
    return [p.reward - (sum(groups[p.dialogue]) - p.reward) / (len(groups[p.dialogue]) - 1) for p in played]


class EpisodeTrainer(Trainer):
    """REINFORCE over simulated conversations (module docstring), on TRL's trainer base like
    :class:`rl.manager.ManagerTrainer`: one ``train()`` is one pass over a round's conversations."""

    def __init__(self, head: ManagerHead, args: ManagerConfig, played: list[Played], baseline: MovingAverageBaseline,
                 reference: ManagerHead, corpus: DecisionTensors, optimizer: torch.optim.Optimizer) -> None:  # fmt: skip
        self.played, self.baseline, self.reference, self.corpus = played, baseline, reference, corpus
        # several rollouts per dialogue or branch pairs: the leave-one-out baseline of each group, else the moving average
        grouped = int(args.sim_rollouts) > 1 or bool(args.sim_branch)  # type: ignore[attr-defined]
        self.rloo = leave_one_out(played) if grouped else None
        anchored = float(args.sim_kl_beta) > 0  # type: ignore[attr-defined]
        self.anchor = torch.nonzero(~taught_by_conversations(corpus.state)).flatten() if anchored else torch.zeros(0, dtype=torch.long)
        self.history: list[dict[str, Any]] = []
        self._generator = torch.Generator().manual_seed(args.seed)
        super().__init__(
            model=head,
            args=args,
            train_dataset=DecisionRows(len(played)),
            data_collator=collate_rows,
            optimizers=(optimizer, None),
        )

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
        episodes = [self.played[int(i)] for i in inputs["rows"]]
        advantages = []
        for i, ep in zip(inputs["rows"], episodes, strict=True):  # the baseline before this episode's own reward, then updated with it
            advantages.append(ep.reward - self.baseline.value(ep.feedback) if self.rloo is None else self.rloo[int(i)])
            self.baseline.update(ep.feedback, ep.reward)
        flat = [(n, d) for n, ep in enumerate(episodes) for d in ep.decisions]
        loss = torch.zeros(())
        if flat:
            det, match = model(torch.stack([d.llm for _, d in flat]), torch.stack([d.state for _, d in flat]))
            terms = []
            for row, (n, d) in enumerate(flat):
                logits = det[row] if d.detection else match[row, d.options]
                logp = torch.log_softmax(logits, -1)[d.options.index(d.action)]
                terms.append(-advantages[n] * logp)
            loss = torch.stack(terms).sum() / len(episodes)
        beta = float(self.args.sim_kl_beta)  # type: ignore[attr-defined]
        if beta > 0 and len(self.anchor):  # stay near the corpus-trained detection on corpus turns (TRL's KL penalty)
            rows = self.anchor[torch.randint(len(self.anchor), (min(256, len(self.anchor)),), generator=self._generator)]
            llm, state = self.corpus.llm[rows], self.corpus.state[rows]
            loss = loss + beta * detection_kl(model(llm, state)[0], self.reference, llm, state)
        self.history.append({"phase": "conversations", "reward": statistics.mean(e.reward for e in episodes),
                             "baseline": statistics.mean(e.reward - a for e, a in zip(episodes, advantages, strict=True)),
                             "loss": float(loss.detach())})  # fmt: skip
        return (loss, {}) if return_outputs else loss


def train_on_conversations(
    head: ManagerHead,
    cfg: ManagerConfig,
    dataset: str,
    corpus: DecisionTensors,
    data_root: str | None = None,
    progress: bool = True,
    model_spec: str = "embedded",
) -> dict[str, Any]:
    """RLPF of ``head`` on simulated conversations, in place: ``cfg.sim_rounds`` rounds of
    ``cfg.sim_dialogues`` sampled conversations, each followed by one pass of updates. Returns the
    greedy success on held-out conversations before and after, and the per-round history."""
    from agent.llm import load_chat_model
    from tools.env import expert_env

    env = expert_env(dataset, data_root)
    pool, _ = choose_dialogues(env, dataset, cfg.sim_split, 100_000, cfg.seed, data_root)
    if not pool:
        raise ValueError(f"no {dataset}/{cfg.sim_split} dialogue has a catalog target to simulate")
    held, pool = pool[: cfg.sim_eval_dialogues], pool[cfg.sim_eval_dialogues :]  # the before/after dialogues are never trained on
    if not pool:
        raise ValueError(f"{dataset}/{cfg.sim_split} has no dialogue left to train on after {cfg.sim_eval_dialogues} held-out ones")
    feedback = [f.strip() for f in cfg.sim_feedback.split(",") if f.strip()]
    model = load_chat_model(None if model_spec == "embedded" else model_spec)  # the LLM whose hidden states the head reads
    # as `python -m eval simulate` runs it: top-50 rankings, no generated response (the simulator reads the
    # expert's question or items, which the response only wraps)
    system = GraphSystem(
        "full", GraphConfig(dataset=dataset, data_root=data_root, n_demos=0), Context(generate=False), model=model, head=head
    )
    reference = copy.deepcopy(head).eval()
    baseline = MovingAverageBaseline(cfg.baseline_beta)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.sim_learning_rate, weight_decay=cfg.weight_decay)
    rng = random.Random(cfg.seed)

    def success(tag: str) -> float:
        head.eval()
        eps = play(head, model, system, held, feedback, cfg.sim_turns, cfg.hit_k, sample=False, curious=cfg.sim_curious, seed=cfg.seed)
        value = statistics.mean(e.reward for e in eps)
        if progress:
            print(
                f"conversations {tag}: greedy success@{cfg.hit_k} {value:.4f} on {len(eps)} held-out {dataset}/{cfg.sim_split} dialogues",
                flush=True,
            )
        return value

    report: dict[str, Any] = {"sim_success_before": success("before"), "history": []}
    for r in range(cfg.sim_rounds):
        head.eval()  # dropout off while it acts
        seed = cfg.seed + 1000 * (r + 1)
        if cfg.sim_branch:
            batch = [pool[rng.randrange(len(pool))] for _ in range(cfg.sim_dialogues)]
            played = play_branches(head, model, system, batch, feedback, cfg.sim_turns, cfg.hit_k, curious=cfg.sim_curious, seed=seed)
        else:
            batch = [pool[rng.randrange(len(pool))] for _ in range(max(1, cfg.sim_dialogues // cfg.sim_rollouts))]
            played = play(head, model, system, batch, feedback, cfg.sim_turns, cfg.hit_k, sample=True, curious=cfg.sim_curious,
                          opening=cfg.sim_opening, seed=seed, rollouts=cfg.sim_rollouts)  # fmt: skip
        if not played:  # no decision to compare this round (every conversation ended at its opening)
            continue
        args = dataclasses.replace(cfg, num_train_epochs=1, learning_rate=cfg.sim_learning_rate, lr_scheduler_type="constant",
                                   per_device_train_batch_size=cfg.sim_batch_size, output_dir=tempfile.mkdtemp(prefix="llmcrs-conv-"))  # fmt: skip
        trainer = EpisodeTrainer(head, args, played, baseline, reference, corpus, optimizer)
        trainer.train()
        mean = statistics.mean(p.reward for p in played)
        acted = played[::2] if cfg.sim_branch else played  # a pair's first member is what the head chose
        asks = statistics.mean(d.action != REC for p in acted for d in p.decisions if d.detection)
        report["history"].append({"phase": "conversations", "step": r + 1, "reward": mean, "baseline": statistics.mean(baseline.values.values()),
                                  "loss": statistics.mean(h["loss"] for h in trainer.history), "ask_share": asks})  # fmt: skip
        if progress and cfg.sim_branch:
            better = sum(b.reward > a.reward for a, b in zip(played[::2], played[1::2], strict=True))
            worse = sum(b.reward < a.reward for a, b in zip(played[::2], played[1::2], strict=True))
            print(
                f"round {r + 1}/{cfg.sim_rounds}: {len(played) // 2} switched decisions, {better} ended better, {worse} worse", flush=True
            )
        elif progress:
            print(
                f"round {r + 1}/{cfg.sim_rounds}: sampled success {mean:.3f}, sub-task other than recommendation on {asks:.2f} of turns",
                flush=True,
            )
    report["sim_success_after"] = success("after")
    head.eval()
    return report
