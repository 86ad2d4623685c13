"""RLPF on simulated conversations (:mod:`rl.episodes`): the estimator learns from conversation rewards,
and the graph's executed decisions are recorded with the inputs the head read."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from typing import Any

import pytest
import torch

from agent.config import GraphConfig
from agent.manager import STATE_FEATURES, SUBTASK_NAMES, ManagerHead
from rl.baseline import MovingAverageBaseline
from rl.episodes import Decision, EpisodeTrainer, Played, executed_decisions, play, play_branches
from rl.manager import ManagerConfig, detection_kl
from tests.test_manager import synthetic
from tools.subtasks import ELICITATION, RECOMMENDATION

ELI, REC = SUBTASK_NAMES.index(ELICITATION), SUBTASK_NAMES.index(RECOMMENDATION)


def _toy_round(head: ManagerHead, g: torch.Generator, n: int = 200) -> list[Played]:
    """Conversations of one decision each, acted on by sampling the head: asking pays where feature 0
    is positive (a rejection without a reason, say), recommending pays elsewhere."""
    llm = torch.randn(n, 16, generator=g)
    state = torch.zeros(n, 3)
    with torch.no_grad():
        probs = torch.softmax(head(llm, state)[0], -1)
    actions = torch.multinomial(probs, 1, generator=g).squeeze(1)
    out = []
    for i in range(n):
        a = int(actions[i])
        wins = a == (ELI if llm[i, 0] > 0 else REC)
        out.append(Played([Decision(llm[i], state[i], True, list(range(len(SUBTASK_NAMES))), a)], float(wins), "plain", 1))
    return out


def _greedy_reward(head: ManagerHead, g: torch.Generator, n: int = 400) -> float:
    llm = torch.randn(n, 16, generator=g)
    with torch.no_grad():
        choice = head(llm, torch.zeros(n, 3))[0].argmax(-1)
    return float((choice == torch.where(llm[:, 0] > 0, ELI, REC)).float().mean())


def test_rounds_of_sampled_conversations_raise_the_success_of_the_greedy_policy():
    torch.manual_seed(0)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    corpus = synthetic(300, 2)
    head.fit_scaler(corpus.llm)
    reference = copy.deepcopy(head).eval()
    cfg = ManagerConfig(output_dir=tempfile.mkdtemp(), seed=0, sim_kl_beta=0.0, per_device_train_batch_size=25, lr_scheduler_type="constant",
                        num_train_epochs=1, learning_rate=3e-3)  # fmt: skip
    g = torch.Generator().manual_seed(0)
    before = _greedy_reward(head, torch.Generator().manual_seed(9))
    baseline = MovingAverageBaseline(0.9)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    first = None
    for _ in range(8):
        played = _toy_round(head, g)
        first = first if first is not None else sum(p.reward for p in played) / len(played)
        trainer = EpisodeTrainer(head, cfg, played, baseline, reference, corpus, optimizer)
        trainer.train()
    after = _greedy_reward(head, torch.Generator().manual_seed(9))
    assert after > before + 0.3, (before, after)
    assert sum(p.reward for p in _toy_round(head, g)) / 200 > first + 0.2  # the sampled success too
    assert baseline.value("plain") > 0  # the baseline follows the rewards


def test_a_detection_the_graph_overrode_and_matching_over_offered_experts():
    head = ManagerHead(4, 2, ["kbrd", "sasrec", "popularity"])
    inputs = [(torch.ones(4), torch.zeros(2)), (torch.zeros(4), torch.ones(2))]
    traj = [
        {"stage": "detection", "method": "head", "parsed": RECOMMENDATION},
        {"stage": "matching", "method": "head", "parsed": "popularity", "options": ["sasrec", "popularity"]},
    ]
    det, match = executed_decisions(traj, inputs, head)
    assert det.detection and det.action == REC and torch.equal(det.llm, inputs[0][0])
    assert not match.detection and match.options == [1, 2] and match.action == 2 and torch.equal(match.state, inputs[1][1])
    overridden = [{**traj[0], "error": "answered earlier; recommendation instead"}]
    assert executed_decisions(overridden, inputs, head) == []  # the graph did not execute the head's choice
    assert executed_decisions([{"stage": "detection", "method": "rule", "parsed": RECOMMENDATION}], inputs, head) == []


def test_play_records_every_executed_decision_of_the_real_graph(embedded, redial_env, real_root):
    """On real ReDial dialogues, with the shipped head: one recorded detection per turn (unless the
    graph overrode it), the head's inputs taken by the hook, and sampling switched back off after."""
    from agent.context import Context
    from agent.manager import load_manager, manager_dir
    from sim.dialogues import choose_dialogues
    from sim.systems import GraphSystem

    head, _ = load_manager(manager_dir("redial"))
    system = GraphSystem(
        "full", GraphConfig(data_root=str(real_root), n_demos=0), Context(top_k=50, generate=False), model=embedded, head=head
    )
    dialogues, _ = choose_dialogues(redial_env, "redial", "valid", 3, 0, str(real_root))
    played = play(head, embedded, system, dialogues, ["plain"], turns=3, k=10, sample=True, opening=True)
    assert not embedded.sample_choices
    assert len(played) == 3
    for p in played:
        detections = [d for d in p.decisions if d.detection]
        assert 1 <= len(detections) <= p.turns
        assert all(d.llm.shape == (head.spec["llm_dim"],) and d.state.shape == (len(STATE_FEATURES),) for d in p.decisions)
        assert p.reward in (0.0, 1.0) and (p.reward == 1.0 or p.turns == 3)
    # by default the opening (a corpus turn) is played but not learned: the same greedy conversations
    # without their first turn's decisions
    every = play(head, embedded, system, dialogues, ["plain"], turns=3, k=10, sample=False, opening=True)
    later = play(head, embedded, system, dialogues, ["plain"], turns=3, k=10, sample=False)
    for a, b in zip(every, later, strict=True):
        assert len(b.decisions) < len(a.decisions) and a.reward == b.reward
        assert [d.action for d in b.decisions] == [d.action for d in a.decisions][len(a.decisions) - len(b.decisions) :]


def test_branches_pair_each_later_greedy_decision_with_its_switch_on_the_real_graph(embedded, redial_env, real_root):
    """On real ReDial dialogues with the shipped head: each pair holds the same decision context twice,
    once as the head decided (greedy) and once switched (elicitation for a recommendation, else
    recommendation); the greedy member's reward is the greedy conversation's; sampling stays off."""
    from agent.context import Context
    from agent.manager import load_manager, manager_dir
    from sim.dialogues import choose_dialogues
    from sim.systems import GraphSystem

    head, _ = load_manager(manager_dir("redial"))
    system = GraphSystem(
        "full", GraphConfig(data_root=str(real_root), n_demos=0), Context(top_k=50, generate=False), model=embedded, head=head
    )
    dialogues, _ = choose_dialogues(redial_env, "redial", "valid", 6, 0, str(real_root))
    greedy = play(head, embedded, system, dialogues, ["plain"], turns=3, k=10, sample=False)
    pairs = play_branches(head, embedded, system, dialogues, ["plain"], turns=3, k=10)
    assert not embedded.sample_choices
    assert pairs and len(pairs) % 2 == 0
    # a pair per later turn of each greedy conversation (the opening is not switched), except where the
    # switch is a question right after the user stated a wish, which the graph overrides (never asked)
    later = sum(len([d for d in p.decisions if d.detection]) for p in greedy)
    assert 0 < len(pairs) // 2 <= later
    for a, b in zip(pairs[::2], pairs[1::2], strict=True):
        assert a.dialogue == b.dialogue and len(a.decisions) == len(b.decisions) == 1
        kept, switched = a.decisions[0], b.decisions[0]
        assert torch.equal(kept.state, switched.state) and torch.equal(kept.llm, switched.llm)
        assert switched.action == (ELI if kept.action == REC else REC)
        assert a.reward in {g.reward for g in greedy}


def _pairs(head: ManagerHead, g: torch.Generator, n: int, decided: bool) -> list[Played]:
    """Branch pairs of one decision context each (the greedy action, then its switch). ``decided``:
    both conversations end the same; else asking pays where feature 0 is positive, recommending elsewhere."""
    out = []
    for i in range(n):
        llm = torch.randn(16, generator=g)
        with torch.no_grad():
            kept = int(head(llm[None], torch.zeros(1, 3))[0].argmax(-1))
        switched = ELI if kept == REC else REC
        won_anyway = bool(torch.rand(1, generator=g) < 0.5)
        best = ELI if llm[0] > 0 else REC
        for a in (kept, switched):
            reward = float(won_anyway) if decided else float(a == best)
            out.append(Played([Decision(llm, torch.zeros(3), True, list(range(len(SUBTASK_NAMES))), a)], reward, "plain", 3, i))
    return out


def test_branch_pairs_move_only_the_decisions_whose_switch_changed_the_end_and_learn_them():
    head, cfg, corpus, optimizer = _episode_setup(1, 0.1)
    cfg = dataclasses.replace(cfg, sim_branch=True)
    before = [p.detach().clone() for p in head.parameters()]
    tied = _pairs(head, torch.Generator().manual_seed(1), 50, decided=True)
    EpisodeTrainer(head, cfg, tied, MovingAverageBaseline(0.9), copy.deepcopy(head).eval(), corpus, optimizer).train()
    assert all(torch.equal(a, b) for a, b in zip(head.parameters(), before, strict=True))  # a tie teaches nothing
    head, cfg, corpus, optimizer = _episode_setup(1, 0.3)
    cfg = dataclasses.replace(cfg, sim_branch=True)
    g = torch.Generator().manual_seed(0)
    start = _greedy_reward(head, torch.Generator().manual_seed(9))
    for _ in range(8):
        EpisodeTrainer(head, cfg, _pairs(head, g, 50, decided=False), MovingAverageBaseline(0.9), copy.deepcopy(head).eval(),
                       corpus, optimizer).train()  # fmt: skip
    assert _greedy_reward(head, torch.Generator().manual_seed(9)) > start + 0.3


def test_the_kl_anchor_holds_corpus_turns_but_leaves_the_replies_to_a_rejection_to_the_conversations():
    """A strong KL (beta 10) keeps the corpus-trained detection on openings and questions, while the
    conversations still teach what to do after "I don't like them.": the corpus rows of that kind
    (mostly labelled recommendation) are not anchored, so they do not pull against the reward."""
    torch.manual_seed(0)
    dim, named = len(STATE_FEATURES), STATE_FEATURES.index("assistant_named_item")
    corpus = synthetic(400, 3)
    state = torch.zeros(400, dim)
    state[::2, named] = 1.0  # half the corpus replies to a recommendation, naming nothing
    corpus = dataclasses.replace(corpus, state=state)
    head = ManagerHead(16, dim, ["a", "b"], hidden=32, dropout=0.0)
    head.fit_scaler(corpus.llm)
    head.det_bias[REC] = 1.5  # the corpus-trained head recommends everywhere
    reference = copy.deepcopy(head).eval()
    cfg = ManagerConfig(output_dir=tempfile.mkdtemp(), seed=0, sim_kl_beta=10.0, per_device_train_batch_size=25, lr_scheduler_type="constant",
                        num_train_epochs=1, learning_rate=3e-3)  # fmt: skip
    g = torch.Generator().manual_seed(0)

    def rejections(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.zeros(n, dim)
        s[:, named] = 1.0
        return torch.randn(n, 16, generator=g), s

    baseline, optimizer = MovingAverageBaseline(0.9), torch.optim.AdamW(head.parameters(), lr=1e-2)
    for _ in range(10):  # asking after a rejection is what pays
        llm, s = rejections(200)
        with torch.no_grad():
            actions = torch.multinomial(torch.softmax(head(llm, s)[0], -1), 1, generator=g).squeeze(1)
        played = [Played([Decision(llm[i], s[i], True, list(range(len(SUBTASK_NAMES))), int(a))], float(a == ELI), "plain", 1)
                  for i, a in enumerate(actions.tolist())]  # fmt: skip
        EpisodeTrainer(head, cfg, played, baseline, reference, corpus, optimizer).train()
    head.eval()
    with torch.no_grad():
        llm, s = rejections(400)
        asks = float((head(llm, s)[0].argmax(-1) == ELI).float().mean())
        held = corpus.state[:, named] == 0
        det = head(corpus.llm[held], corpus.state[held])[0]
        kl = float(detection_kl(det, reference, corpus.llm[held], corpus.state[held]))
        still = float((det.argmax(-1) == REC).float().mean())
    assert asks > 0.9, asks  # learned: ask after a rejection
    assert still > 0.95 and kl < 0.1, (still, kl)  # held: the other corpus turns keep their detection


def _rollouts(head: ManagerHead, g: torch.Generator, dialogues: int, rollouts: int, decided: bool) -> list[Played]:
    """Sampled rollouts of dialogues with four decisions each. ``decided``: each dialogue ends the same
    whatever the head does (won or lost by its fate); else its first decision decides: asking pays
    where feature 0 is positive, recommending elsewhere."""
    out = []
    for n in range(dialogues):
        llm = torch.randn(4, 16, generator=g)
        won_anyway = bool(torch.rand(1, generator=g) < 0.5)
        for _ in range(rollouts):
            with torch.no_grad():
                probs = torch.softmax(head(llm, torch.zeros(4, 3))[0], -1)
            actions = torch.multinomial(probs, 1, generator=g).squeeze(1).tolist()
            reward = float(won_anyway) if decided else float(actions[0] == (ELI if llm[0, 0] > 0 else REC))
            decisions = [Decision(llm[i], torch.zeros(3), True, list(range(len(SUBTASK_NAMES))), a) for i, a in enumerate(actions)]
            out.append(Played(decisions, reward, "plain", 5, n))
    return out


def _episode_setup(rollouts: int, lr: float) -> tuple[ManagerHead, ManagerConfig, Any, torch.optim.Optimizer]:
    torch.manual_seed(0)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    corpus = synthetic(300, 2)
    head.fit_scaler(corpus.llm)
    cfg = ManagerConfig(output_dir=tempfile.mkdtemp(), seed=0, sim_kl_beta=0.0, sim_rollouts=rollouts, per_device_train_batch_size=25,
                        lr_scheduler_type="constant", num_train_epochs=1, learning_rate=lr)  # fmt: skip
    return head, cfg, corpus, torch.optim.SGD(head.parameters(), lr=lr)


def test_with_several_rollouts_a_dialogue_that_ends_the_same_whatever_the_head_does_teaches_nothing():
    """Compared with the other rollouts of its dialogue (RLOO), a conversation won or lost by the
    dialogue alone moves no weight; against a moving average the same conversations do (noise)."""
    moved = {}
    for rollouts in (1, 4):
        head, cfg, corpus, optimizer = _episode_setup(rollouts, 0.1)
        before = [p.detach().clone() for p in head.parameters()]
        played = _rollouts(head, torch.Generator().manual_seed(1), 25, 4, decided=True)
        EpisodeTrainer(head, cfg, played, MovingAverageBaseline(0.9), copy.deepcopy(head).eval(), corpus, optimizer).train()
        moved[rollouts] = max(float((a - b).abs().max()) for a, b in zip(head.parameters(), before, strict=True))
    assert moved[4] == 0.0 and moved[1] > 1e-3, moved


def test_several_rollouts_per_dialogue_learn_the_decision_that_decides():
    head, cfg, corpus, optimizer = _episode_setup(4, 0.3)
    g = torch.Generator().manual_seed(0)
    before = _greedy_reward(head, torch.Generator().manual_seed(9))
    for _ in range(8):
        EpisodeTrainer(head, cfg, _rollouts(head, g, 50, 4, decided=False), MovingAverageBaseline(0.9), copy.deepcopy(head).eval(),
                       corpus, optimizer).train()  # fmt: skip
    after = _greedy_reward(head, torch.Generator().manual_seed(9))
    assert after > before + 0.3, (before, after)


def test_leave_one_out_needs_rollouts_of_every_dialogue():
    cfg = ManagerConfig(output_dir=tempfile.mkdtemp(), seed=0, sim_rollouts=2)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    lone = [Played([], 1.0, "plain", 1, 0), Played([], 0.0, "plain", 1, 1)]
    with pytest.raises(ValueError, match="two rollouts"):
        EpisodeTrainer(head, cfg, lone, MovingAverageBaseline(0.9), head, synthetic(10, 2), torch.optim.AdamW(head.parameters()))
