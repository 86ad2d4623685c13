"""The trained manager: the head learns on fixed data, artefacts load and are checked, the graph uses
it (or the rule, with a warning), and the shipped one decides as a user expects."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from agent.llm import weights_sha256
from agent.manager import STATE_FEATURES, SUBTASK_NAMES, ManagerError, ManagerHead, load_manager, save_manager, state_features
from eval.scripted import SCRIPTS
from rl.manager import DecisionTensors, ManagerConfig, actions_of, decision_tensors, train_manager
from tests.conftest import REPO, fake_llm
from tools.subtasks import ELICITATION, EXPLANATION, RECOMMENDATION


def synthetic(n: int, seed: int) -> DecisionTensors:
    """Decisions whose label is readable from the features and whose best expert depends on one feature."""
    g = torch.Generator().manual_seed(seed)
    llm = torch.randn(n, 16, generator=g)
    state = torch.zeros(n, 3)
    labels = llm[:, :4].argmax(-1)
    experts = ["a", "b"]
    actions = actions_of(experts)
    good = (llm[:, 5] > 0).long()  # expert a (0) hits when feature 5 is positive, else b (1)
    rewards = torch.zeros(n, len(actions))
    hits = {k: torch.zeros(n, 2, 1) for k in (10, 50)}
    rec = SUBTASK_NAMES.index(RECOMMENDATION)
    for i in range(n):
        for j, (s, e) in enumerate(actions):
            if s == int(labels[i]) and s != rec:
                rewards[i, j] = 0.5
            if s == rec and int(labels[i]) == rec:
                rewards[i, j] = 1.0 if e == int(good[i]) else 0.1
        hits[10][i, int(good[i]), 0] = hits[50][i, int(good[i]), 0] = 1.0
    rankings = [[["t"] if int(good[i]) == e else ["x"] for e in range(2)] for i in range(n)]
    return DecisionTensors([str(i) for i in range(n)], llm, state, labels, rewards, hits, experts, actions, labels == rec,
                           rankings, [["t"]] * n)  # fmt: skip


def test_training_raises_label_accuracy_and_reward_on_fixed_data(tmp_path):
    torch.manual_seed(0)
    train, valid = synthetic(600, 0), synthetic(300, 1)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    cfg = ManagerConfig(output_dir=str(tmp_path), sft_epochs=15, rl_epochs=15, learning_rate=3e-3, rl_learning_rate=3e-3, seed=0)
    trained = train_manager(head, cfg, train, valid)
    report = trained.report
    assert report["valid_accuracy_sft"] > report["valid_accuracy_init"] + 0.3  # SFT learns the labels
    assert report["valid_reward_rlpf"] > report["valid_reward_sft"] + 0.05  # RLPF learns the matching
    assert report["valid_hit@10_rlpf"] > report["valid_hit@10_sft"]
    assert any(h["phase"] == "rlpf" and "reward" in h for h in trained.history)
    sft = trained.sft_head
    assert sft is not None and not torch.equal(sft.match.weight, head.match.weight)  # the w/o RL head is a snapshot
    # what the snapshot's manager.json may say: its own phases' figures, none measured after RLPF
    assert set(trained.sft_report()) == {
        f"valid_{m}_{t}" for m in ("accuracy", "reward", "hit@10") for t in ("init", "sft", "sft_calibrated")
    }


def test_another_datasets_labelled_decisions_teach_sft_what_a_tiny_training_split_cannot(tmp_path):
    """INSPIRED's case: its own training split is 820 turns; ReDial's decisions, labelled by the same
    function, join SFT (``sft_also``). Fails if the borrowed rows are ignored."""
    from rl.manager import concat

    tiny, borrowed, valid = synthetic(24, 0), synthetic(800, 2), synthetic(400, 1)
    cfg = ManagerConfig(output_dir=str(tmp_path), sft_epochs=15, rl_epochs=0, learning_rate=3e-3, seed=0)
    accuracy = {}
    for name, also in (("alone", []), ("with", [borrowed])):
        torch.manual_seed(0)
        head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
        accuracy[name] = train_manager(head, cfg, tiny, valid, sft_also=also).report["valid_accuracy_sft"]
    assert accuracy["with"] > accuracy["alone"] + 0.15, accuracy
    joined = concat([tiny, borrowed])
    assert len(joined) == 824 and torch.equal(joined.labels[24:], borrowed.labels)
    other = synthetic(10, 3)
    other.experts = ["a", "c"]
    with pytest.raises(ValueError, match="different experts"):
        concat([tiny, other])


def _write_decisions(dataset: str, split: str, n: int, seed: int) -> None:
    """A decision split on disk, as ``python -m rl.decisions`` writes it: greetings labelled elicitation,
    requests naming a film labelled recommendation (their target ranked first on even rows)."""
    import json
    import random

    from rl.decisions import decision_path, features_path

    rng = random.Random(seed)
    path = decision_path(dataset, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        asks = rng.random() < 0.5
        text = rng.choice(["I loved Heat, anything like it?", "something like Alien please"]) if asks else rng.choice(["hello", "hi there"])
        rows.append({"id": f"d{i}/1", "context": [["user", text]], "label": RECOMMENDATION if asks else ELICITATION,
                     "targets": ["x"] if asks else [], "reference": "", "is_sample": asks, "responses": {},
                     "rankings": {"popularity_recommender": ["x"] if i % 2 == 0 else ["y"]} if asks else {}})  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    path.with_suffix(".meta.json").write_text(json.dumps({"recommenders": ["popularity_recommender"]}))
    g = torch.Generator().manual_seed(seed)
    torch.save({"ids": [r["id"] for r in rows], "llm": torch.randn(n, 8, generator=g), "state": torch.zeros(n, len(STATE_FEATURES)),
                "model": "fake"}, features_path(dataset, split))  # fmt: skip


def test_eval_manager_holds_a_manager_that_borrowed_training_turns_to_tfidf_trained_on_the_same(tmp_path, monkeypatch):
    from eval.manager import ManagerEvalArguments, evaluate

    monkeypatch.setenv("LLMCRS_HOME", str(tmp_path / "home"))
    for dataset, splits in (("own", ("train", "test")), ("other", ("train",))):
        for n, split in enumerate(splits):
            _write_decisions(dataset, split, 40, n)
    head = ManagerHead(8, len(STATE_FEATURES), ["popularity_recommender"], hidden=8, dropout=0.0)
    save_manager(head, tmp_path / "m", {"dataset": "own", "train_rows": 40, "sft_also": ["other"], "sft_also_rows": 40, "seconds": 1})
    md = evaluate(ManagerEvalArguments(dataset="own", manager=str(tmp_path / "m"), results_dir=str(tmp_path / "results")))
    tables = md.read_text()
    pooled = "| TF-IDF + logistic regression, also trained on other | 1.0000"  # the greetings are learnable from either
    assert pooled in tables, tables
    vs = [line for line in tables.splitlines() if line.startswith(pooled)][0]
    assert vs.count("p=") == 2  # compared with the manager, like the other baselines, and in the Holm correction
    assert "and 40 of other in SFT" in tables
    from rl.decisions import load_split

    rows = [r for r in load_split("own", "test") if r["is_sample"]]
    hit = sum(r["rankings"]["popularity_recommender"] == ["x"] for r in rows) / len(rows)
    assert f"| expert:popularity_recommender (always) | {hit:.4f}" in tables  # per-target HIT, computed here independently


def test_the_blending_bound_fuses_the_best_expert_with_the_other_that_helps_most():
    from eval.manager import blend_bound
    from rl.manager import REC, fixed, target_hits

    data = synthetic(200, 0)  # each expert ranks the target first on about half the rows and misses it elsewhere
    single = [float(target_hits(fixed(data, REC, e), data, 10).mean()) for e in range(2)]
    best = max(range(2), key=lambda e: single[e])
    dec, what = blend_bound(data, best)
    assert what == f"{data.experts[1 - best]} at 0.05"  # every weight puts both experts' items in the top 10; the first is kept
    assert float(target_hits(dec, data, 10).mean()) == 1.0 > max(single)


def test_calibrating_on_reward_keeps_the_recommendations_the_labels_call_elicitation(tmp_path):
    """INSPIRED's case: the corpus labels half the rewarding recommendation turns "elicitation"; offsets
    fitted to accuracy follow the labels and stop recommending there, offsets fitted to the reward do not."""
    import copy

    from rl.manager import calibrate_detection, expected_reward, greedy

    def relabelled(n: int, seed: int) -> DecisionTensors:
        data = synthetic(n, seed)
        rec, eli = SUBTASK_NAMES.index(RECOMMENDATION), SUBTASK_NAMES.index(ELICITATION)
        hidden = (data.labels == rec) & (torch.arange(n) % 2 == 0)
        data.labels[hidden] = eli
        return data

    torch.manual_seed(0)
    train, valid = relabelled(600, 0), relabelled(300, 1)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    cfg = ManagerConfig(output_dir=str(tmp_path), sft_epochs=15, rl_epochs=0, learning_rate=3e-3, seed=0)
    train_manager(head, cfg, train, valid)
    by_accuracy, by_reward = copy.deepcopy(head), copy.deepcopy(head)
    calibrate_detection(by_accuracy, valid, "accuracy")
    calibrate_detection(by_reward, valid, "reward")
    rec = SUBTASK_NAMES.index(RECOMMENDATION)
    acc_dec, rew_dec = greedy(by_accuracy, valid), greedy(by_reward, valid)
    assert expected_reward(rew_dec, valid) > expected_reward(acc_dec, valid) + 0.02
    assert int((rew_dec.subtask == rec).sum()) > int((acc_dec.subtask == rec).sum())
    with pytest.raises(ValueError, match="calibrate_on must be one of accuracy, reward"):
        calibrate_detection(head, valid, "bleu")


def test_a_sub_task_the_validation_split_rarely_labels_keeps_its_detection_offset(tmp_path):
    """ReDial's case: validation labels one turn explanation. Accuracy offsets fitted to it learn only
    to never explain (the rows the head would explain are labelled otherwise); below
    ``min_labels`` the offset stays 0 and the well-labelled sub-tasks are still calibrated."""
    import copy

    from rl.manager import calibrate_detection, greedy

    torch.manual_seed(0)
    train, valid = synthetic(600, 0), synthetic(600, 1)
    head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
    train_manager(head, ManagerConfig(output_dir=str(tmp_path), sft_epochs=15, rl_epochs=0, learning_rate=3e-3, seed=0), train, valid)
    why, eli = SUBTASK_NAMES.index(EXPLANATION), SUBTASK_NAMES.index(ELICITATION)
    rare = valid.labels == why
    valid.labels[rare & (torch.cumsum(rare.long(), 0) > 2)] = eli  # two explanation labels remain
    rec = valid.labels == SUBTASK_NAMES.index(RECOMMENDATION)
    valid.labels[rec & (torch.arange(len(valid)) % 3 > 0)] = eli  # two thirds: an offset the well-labelled sub-tasks need
    free, floored = copy.deepcopy(head), copy.deepcopy(head)
    calibrate_detection(free, valid, "accuracy")
    calibrate_detection(floored, valid, "accuracy", min_labels=30)
    assert float(free.det_bias[why]) < 0  # fitted to two labels: explanation all but switched off
    assert float(floored.det_bias[why]) == 0.0
    assert int((greedy(floored, valid).subtask == why).sum()) > int((greedy(free, valid).subtask == why).sum())
    assert float(floored.det_bias[SUBTASK_NAMES.index(RECOMMENDATION)]) < 0  # the offsets with labels still move


def _complementary(n: int, together: bool) -> DecisionTensors:
    """Two experts and one target per row. ``together``: each expert ranks the target 11th behind ten
    items of its own, so neither alone has it in its top 10 and their blend puts it first. Otherwise
    expert a ranks it 10th and expert b not at all."""
    data = synthetic(n, 0)
    data.is_sample[:] = True
    own = [[f"{e}{j}" for j in range(10)] for e in "ab"]
    data.rankings = [[own[0] + ["t"], own[1] + ["t"]] if together else [own[0][:9] + ["t"], own[1]] for _ in range(n)]
    data.targets = [["t"]] * n
    data.hits = {k: torch.tensor([[[float("t" in r[:k])] for r in row] for row in data.rankings]) for k in (10, 50)}
    data.labels[:] = SUBTASK_NAMES.index(RECOMMENDATION)
    return data


def test_blending_is_calibrated_on_held_out_hits():
    """When the experts are complementary the blend finds targets neither finds alone, and calibration
    turns it on; when it would only add noise, the head keeps picking one expert (temperature 0)."""
    from rl.manager import calibrate_blend, greedy, target_hits

    torch.manual_seed(0)
    head = ManagerHead(16, 3, ["a", "b"], hidden=8, dropout=0.0).eval()
    with torch.no_grad():
        head.detect.bias[SUBTASK_NAMES.index(RECOMMENDATION)] = 20.0  # recommend on every row
        head.match.weight.zero_()  # the matching distribution: 0.6 a, 0.4 b on every row
        head.match.bias.copy_(torch.log(torch.tensor([0.6, 0.4])))
    data = _complementary(50, together=True)
    assert float(target_hits(greedy(head, data), data, 10).mean()) == 0.0  # picking a finds nothing
    assert calibrate_blend(head, data) == 1.0
    assert float(head.blend_temperature) > 0
    assert float(target_hits(greedy(head, data), data, 10).mean()) == 1.0
    assert float(target_hits(greedy(head, data, blend=False), data, 10).mean()) == 0.0
    alone = _complementary(50, together=False)  # a finds the target 10th; b's items would push it out
    assert calibrate_blend(head, alone) == 1.0
    assert float(head.blend_temperature) == 0.0


def test_learned_matching_is_kept_only_where_it_beats_the_best_expert_on_turns_it_did_not_learn(tmp_path):
    """ReDial's case: RLPF fitted the matching to the validation turns it learned from (above the reranker
    there, below it on the test split). The guard cross-fits RLPF; where the best expert cannot be read
    from the features, it fixes the matching to the expert best on average; where it can, it keeps it."""
    from rl.manager import greedy, guard_matching

    def unreadable(n: int, seed: int) -> DecisionTensors:  # a hits on a random 70% of the rows, b on the rest
        data = synthetic(n, seed)
        good = (torch.rand(n, generator=torch.Generator().manual_seed(seed + 7)) > 0.7).long()
        rec = SUBTASK_NAMES.index(RECOMMENDATION)
        for i in range(n):
            for j, (sub, e) in enumerate(data.actions):
                if sub == rec and int(data.labels[i]) == rec:
                    data.rewards[i, j] = 1.0 if e == int(good[i]) else 0.1
            data.hits[10][i] = data.hits[50][i] = torch.tensor([[float(good[i] == 0)], [float(good[i] == 1)]])
            data.rankings[i] = [["t"] if int(good[i]) == e else ["x"] for e in range(2)]
        return data

    cfg = ManagerConfig(output_dir=str(tmp_path), sft_epochs=15, rl_epochs=30, learning_rate=3e-3, rl_learning_rate=1e-2, seed=0)
    for data, fixed in ((synthetic(300, 1), None), (unreadable(300, 1), "a")):
        torch.manual_seed(0)
        head = ManagerHead(16, 3, ["a", "b"], hidden=32, dropout=0.0)
        trained = train_manager(head, cfg, synthetic(600, 0), data, rl_data=data)
        before = greedy(head, data, blend=False).expert
        assert trained.sft_reference is not None
        got = guard_matching(head, trained.sft_reference, cfg, data)
        after = greedy(head, data, blend=False).expert
        assert got["matching_fixed"] == fixed
        if fixed is None:  # readable: cross-fitted matching wins, and the head's own matching is untouched
            assert got["matching_oof_hit@10_learned"] > got["matching_oof_hit@10_best_expert"] + 0.1
            assert got["matching_oof_p"] < 0.05 and torch.equal(before, after)
        else:  # fitted noise: before the guard the head sent some turns to b, after it none
            assert got["matching_oof_hit@10_learned"] <= got["matching_oof_hit@10_best_expert"] + 0.02
            assert int((before == 1).sum()) > 0 and int((after == 1).sum()) == 0


def one_decision() -> tuple[list[dict], dict]:
    """One recommendation turn: expert a ranks the target first, b does not; and its (empty) features."""
    rows = [
        {"id": "x/1", "label": RECOMMENDATION, "targets": ["Heat (1995)"], "reference": "You might like Heat (1995).", "is_sample": True,
         "rankings": {"a": ["Heat (1995)"], "b": ["Up (2009)"]},
         "responses": {ELICITATION: "What do you like?", "recommendation:a": "You might like Heat (1995).", "recommendation:b": "You might like Up (2009)."}},
    ]  # fmt: skip
    return rows, {"ids": ["x/1"], "llm": torch.zeros(1, 4), "state": torch.zeros(1, 2)}


def test_rewards_are_tabulated_per_action():
    rows, feats = one_decision()
    data = decision_tensors(rows, feats, ["a", "b"], lam=0.5, k=10)
    rewards = dict(zip(data.actions, data.rewards[0].tolist(), strict=True))
    assert rewards[(SUBTASK_NAMES.index(RECOMMENDATION), 0)] == pytest.approx(1.0)  # HIT and an exact reference
    assert 0 < rewards[(SUBTASK_NAMES.index(RECOMMENDATION), 1)] < 0.5  # no HIT, some words shared
    assert rewards[(SUBTASK_NAMES.index(EXPLANATION), -1)] == 0.0  # no answer for that action
    with pytest.raises(ValueError, match="no cached features"):
        decision_tensors(rows, {"ids": [], "llm": torch.zeros(0, 4), "state": torch.zeros(0, 2)}, ["a", "b"])


def longer_is_better(prompts, completions, **kwargs) -> list[float]:
    """A reward function outside the package, named by its dotted path in a config (TRL-style)."""
    return [len(c) / 100 for c in completions]


def test_the_reward_is_the_configs_functions_and_weights():
    """`reward_funcs` / `reward_weights` of a trainer's config (by name or dotted path) decide the cached
    reward table, as TRL's `reward_funcs` do; the default is the paper's lam*HIT + (1-lam)*BLEU."""
    rows, feats = one_decision()
    rec_a, rec_b, eli = (
        (SUBTASK_NAMES.index(RECOMMENDATION), 0),
        (SUBTASK_NAMES.index(RECOMMENDATION), 1),
        (SUBTASK_NAMES.index(ELICITATION), -1),
    )

    def table(cfg: ManagerConfig) -> dict:
        data = decision_tensors(rows, feats, ["a", "b"], cfg.lam, cfg.hit_k, cfg.rewards())
        return dict(zip(data.actions, data.rewards[0].tolist(), strict=True))

    paper = table(ManagerConfig(output_dir="/tmp/x", lam=0.5))
    assert paper[rec_a] == pytest.approx(1.0) and 0 < paper[rec_b] < 0.5
    hits_only = table(ManagerConfig(output_dir="/tmp/x", reward_funcs="hit", reward_weights="1"))
    assert (hits_only[rec_a], hits_only[rec_b], hits_only[eli]) == (1.0, 0.0, 0.0)
    custom = table(ManagerConfig(output_dir="/tmp/x", reward_funcs="hit,tests.test_manager.longer_is_better", reward_weights="0,1"))
    assert custom[eli] == pytest.approx(len("What do you like?") / 100) and custom[rec_b] == pytest.approx(
        len("You might like Up (2009).") / 100
    )
    with pytest.raises(ValueError, match="unknown reward function"):
        ManagerConfig(output_dir="/tmp/x", reward_funcs="no_such_reward").rewards()
    with pytest.raises(ValueError, match="2 reward functions"):
        ManagerConfig(output_dir="/tmp/x", reward_funcs="hit,bleu", reward_weights="1").rewards()


def test_saved_manager_loads_and_a_corrupt_one_names_the_fix(tmp_path):
    head = ManagerHead(8, 2, ["a"], hidden=8).eval()
    save_manager(head, tmp_path, {"dataset": "redial", "model": "m"})
    loaded, meta = load_manager(tmp_path)
    x, s = torch.randn(3, 8), torch.randn(3, 2)
    assert torch.allclose(loaded(x, s)[0], head(x, s)[0], atol=1e-2)  # stored in fp16
    assert meta["config"]["experts"] == ["a"]
    data = bytearray((tmp_path / "manager.pt").read_bytes())
    data[-10] ^= 0xFF
    (tmp_path / "manager.pt").write_bytes(bytes(data))
    with pytest.raises(ManagerError, match="rl.train"):
        load_manager(tmp_path)


def test_a_head_trained_before_state_features_were_added_decides_as_before():
    """Features are appended: a head reads the first ``state_dim`` of them, so a shipped head trained
    with fewer keeps its decisions when the graph computes more."""
    head = ManagerHead(8, 2, ["a"], hidden=8).eval()
    x, s = torch.randn(3, 8), torch.randn(3, 2)
    wider = torch.cat([s, torch.randn(3, 2)], dim=-1)
    assert torch.equal(head(x, wider)[0], head(x, s)[0])


def test_a_head_saved_before_the_matching_guard_loads_and_matches_as_saved(tmp_path):
    """``match_bias`` is a newer buffer: a file without it loads with a zero bias, and one with the
    guard's bias fixes that expert."""
    import hashlib
    import json

    head = ManagerHead(8, 2, ["a", "b"], hidden=8).eval()
    x, s = torch.randn(20, 8), torch.randn(20, 2)
    save_manager(head, tmp_path / "old", {"dataset": "redial"})
    state = torch.load(tmp_path / "old" / "manager.pt", weights_only=True)
    del state["match_bias"]  # as written before the guard existed
    torch.save(state, tmp_path / "old" / "manager.pt")
    meta = json.loads((tmp_path / "old" / "manager.json").read_text())
    meta["sha256"] = hashlib.sha256((tmp_path / "old" / "manager.pt").read_bytes()).hexdigest()
    (tmp_path / "old" / "manager.json").write_text(json.dumps(meta))
    old, _ = load_manager(tmp_path / "old")
    assert torch.equal(old.match_bias, torch.zeros(2))
    assert torch.allclose(old(x, s)[1], head.half().float()(x, s)[1], atol=1e-2)
    with torch.no_grad():
        head.match_bias[1] = 20.0
    save_manager(head, tmp_path / "new", {"dataset": "redial"})
    assert load_manager(tmp_path / "new")[0](x, s)[1].argmax(-1).tolist() == [1] * 20


def test_a_shipped_sft_snapshot_is_the_w_o_rl_of_its_manager_and_is_packaged():
    """``agent/managers/<dataset>/sft`` (the w/o RL ablation ``eval manager`` reads) loads with its
    checksum, reads the same features and experts as its full head, differs from it, and the wheel's
    package data includes it."""
    import fnmatch
    import tomllib
    from importlib import resources
    from pathlib import Path

    root = Path(str(resources.files("agent.managers")))
    snapshots = sorted(p.parent for p in root.glob("*/sft/manager.json"))
    assert snapshots, "no shipped SFT snapshot (python -m rl.train writes <output_dir>/sft)"
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["agent.managers"]
    for folder in snapshots:
        sft, meta = load_manager(folder)
        full, _ = load_manager(folder.parent)
        assert meta["phase"] == "sft" and sft.spec == full.spec
        assert any(not torch.equal(a, b) for a, b in zip(sft.state_dict().values(), full.state_dict().values(), strict=True))
        for name in ("manager.json", "manager.pt"):
            assert any(fnmatch.fnmatch(str((folder / name).relative_to(root)), g) for g in globs), f"{folder / name} is not package data"


def test_state_features_tell_a_rejection_with_a_reason_from_a_plain_one_and_count_the_questions(redial_env):
    """What the head needs to ask after "I don't like them." but not after "Something with Tom Hanks":
    whether the last user turn says what they like, and how many attributes were asked already."""
    col = {n: i for i, n in enumerate(STATE_FEATURES)}
    offer = [("user", "I want a movie for tonight"), ("recommender", "You might like Titanic (1997).")]
    plain = state_features([*offer, ("user", "Not Titanic (1997), I don't like them.")], [], redial_env)
    reason = state_features([*offer, ("user", "Not Titanic (1997). Something with Tom Hanks in it would be great.")], [], redial_env)
    assert (plain[col["last_user_likes"]], reason[col["last_user_likes"]]) == (0.0, 1.0)
    assert plain[col["attributes_asked"]] == 0.0
    asked = [*offer, ("user", "Not that one."), ("recommender", "Do you have a favourite director, like A, B or C?"), ("user", "No.")]
    asked += [("recommender", "Which genre are you in the mood for: a, b or c?"), ("user", "Comedy.")]
    assert state_features(asked, [], redial_env)[col["attributes_asked"]] == pytest.approx(math.log1p(2))
    assert len(plain) == len(STATE_FEATURES)


def test_without_a_trained_manager_the_rule_decides_with_a_warning(real_root, embedded, monkeypatch):
    import agent.manager
    from agent.graph import build_crs_graph
    from tools import default_experts

    monkeypatch.setattr(agent.manager, "manager_dir", lambda *args: None)  # the embedded model has no head for the dataset
    g = build_crs_graph(model=embedded, tools=default_experts("redial", str(real_root), learned=False), checkpointer=InMemorySaver(),
                        data_root=str(real_root))  # fmt: skip
    with pytest.warns(UserWarning, match="no trained manager for redial"):
        out = g.invoke({"messages": [HumanMessage("hi there")]}, {"configurable": {"thread_id": "r"}}, context=Context(generate=False))
    assert out["trajectory"][0]["method"] == "rule"
    assert out["subtask"]["name"] == ELICITATION


@pytest.mark.parametrize("model", ["openai:gpt-4o-mini@http://127.0.0.1:9/v1", "hf-endpoint:http://127.0.0.1:9", "fake"])
def test_a_model_without_hidden_states_is_refused_by_the_trained_manager_when_the_graph_is_built(model):
    """No silent switch to the rule: the error names the prompted manager, and the same graph builds with it."""
    from agent.graph import build_crs_graph

    spec = fake_llm("Hello") if model == "fake" else model
    with pytest.raises(ManagerError, match="--manager prompt"):
        build_crs_graph(model=spec, manager="trained")
    build_crs_graph(model=spec, manager="prompt")
    build_crs_graph(model=spec, ablations="wo_m")  # w/o M takes no decisions: nothing to refuse


def test_heads_are_found_per_model_and_another_models_head_is_refused_with_its_command(tmp_path, monkeypatch):
    from agent.llm import EMBEDDED_NAME
    from agent.manager import check_head, manager_dir

    monkeypatch.setenv("LLMCRS_MANAGER_DIR", str(tmp_path))
    for folder, model in ((tmp_path / "redial", EMBEDDED_NAME), (tmp_path / "redial" / "other-llm", "/models/other-llm")):
        folder.mkdir(parents=True)
        (folder / "manager.json").write_text(f'{{"model": "{model}", "dataset": "redial"}}')
    assert manager_dir("redial", "/elsewhere/other-llm") == tmp_path / "redial" / "other-llm"  # keyed by the folder's name
    assert manager_dir("redial", EMBEDDED_NAME) == tmp_path / "redial"
    assert manager_dir("redial", "/models/third-llm") == tmp_path / "redial"  # found, and then refused:
    meta = {"model": EMBEDDED_NAME, "model_sha256": "a" * 64, "dataset": "redial"}
    check_head(meta, tmp_path, EMBEDDED_NAME, "a" * 64)
    check_head({"model": "/x/other-llm", "dataset": "redial"}, tmp_path, "/y/other-llm", "b" * 64)  # no sha recorded: by name
    with pytest.raises(ManagerError) as name:
        check_head(meta, tmp_path, "/models/third-llm", "a" * 64)
    assert "python -m rl.decisions --dataset redial --model /models/third-llm" in str(name.value)
    assert "rl.train --config rl/configs/manager_redial.yaml --model /models/third-llm" in str(name.value)
    with pytest.raises(ManagerError, match="weights aaaaaaaaaaaa.*weights bbbbbbbbbbbb"):
        check_head(meta, tmp_path, EMBEDDED_NAME, "b" * 64)  # same name, other weights


def test_weights_sha256_reads_a_file_or_a_folders_weight_files(tmp_path):
    import hashlib

    from agent.llm import weights_sha256

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    (tmp_path / "config.json").write_text("{}")
    one = hashlib.sha256(b"weights").hexdigest()
    assert weights_sha256(tmp_path) == weights_sha256(tmp_path / "model.safetensors") == one
    (tmp_path / "model-2.safetensors").write_bytes(b"more")
    assert weights_sha256(tmp_path) not in ("", one)
    assert weights_sha256("HuggingFaceTB/SmolLM2-135M-Instruct") == ""  # a hub id: no local files


# ---- the shipped trained manager, on the embedded model and the real data ------------------------------


@pytest.fixture(scope="module")
def shipped_graph(real_root, embedded):
    from agent.graph import build_crs_graph
    from agent.manager import manager_dir

    assert manager_dir("redial") is not None, "the trained ReDial manager ships in agent/managers/redial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained experts on a fresh machine are named in warnings
        return build_crs_graph(model=embedded, checkpointer=InMemorySaver(), data_root=str(real_root))


@pytest.mark.e2e
def test_shipped_manager_in_scripted_conversations(shipped_graph):
    right, total, repeats = 0, 0, 0
    for n, script in enumerate(SCRIPTS):
        config = {"configurable": {"thread_id": f"script-{n}"}}
        replies: list[str] = []
        for text, expected in script:
            out = shipped_graph.invoke({"messages": [HumanMessage(text)]}, config)
            assert out["trajectory"][0]["method"] == "head"
            right += out["subtask"]["name"] == expected
            total += 1
            repeats += out["response"] in replies
            replies.append(out["response"])
    assert right / total >= 0.85, f"{right}/{total} sub-tasks right"
    assert repeats == 0


def test_concurrent_runs_decide_as_each_does_alone_with_one_llm_pass_a_turn(shipped_graph, monkeypatch):
    """The turn's LLM features travel in the run's state (``decision_features``), not in an attribute the
    runs share: 16 concurrent runs on 4 threads get exactly the decisions and items each gets alone, and
    matching never repeats its run's LLM pass, however the runs interleave."""
    from concurrent.futures import ThreadPoolExecutor

    from langchain_core.messages import HumanMessage

    graph = shipped_graph
    texts = [t for script in SCRIPTS[:8] for t, _ in script[:2]]
    assert len(set(texts)) == 16

    def run(i_text: tuple[int, str], tag: str) -> tuple[str, str | None, list[str]]:
        i, text = i_text
        out = graph.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": f"{tag}-{i}"}})
        assert out["decision_features"] is None  # not kept once the turn ended
        return out["subtask"]["name"], out["expert"], list((out["expert_output"] or {}).get("items", []))[:10]

    alone = [run(x, "alone") for x in enumerate(texts)]
    model = graph.resources.trained.model  # type: ignore[attr-defined]
    passes, hidden = [], type(model).hidden_features
    monkeypatch.setattr(type(model), "hidden_features", lambda self, *a, **k: passes.append(1) or hidden(self, *a, **k))
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda x: run(x, "together"), enumerate(texts)))
    assert together == alone
    assert len(passes) == len(texts)  # one LLM pass a turn: matching read the features detection computed


@pytest.mark.e2e
def test_a_head_trained_for_a_second_local_model_is_used_and_another_models_head_is_refused(real_root, embedded, tmp_path, monkeypatch):
    """The keying shown with the embedded model's converted folder under two other names: `rl.decisions
    --model` and `rl.train --model` write a head for one, the graph decides with it, and the other (no
    head of its own) is refused with the command that trains one, not switched to the rule."""
    import os
    import subprocess
    import sys

    from agent.graph import build_crs_graph
    from agent.llm import embedded_model_dir
    from crsdata.paths import home_dir

    source = embedded_model_dir()
    home = tmp_path / "home"
    home.mkdir()
    for name in ("catalog.sqlite", "experts", "index", "models"):  # what this machine built already (read only)
        if (home_dir() / name).exists():
            (home / name).symlink_to(home_dir() / name)
    models = {}
    for name in ("other-llm", "third-llm"):
        models[name] = tmp_path / name
        models[name].mkdir()
        for f in source.iterdir():
            (models[name] / f.name).symlink_to(f)
    env = {**os.environ, "LLMCRS_HOME": str(home), "LLMCRS_DATA_DIR": str(real_root)}
    env.pop("LLMCRS_MANAGER_DIR", None)
    other = str(models["other-llm"])
    for cmd in (
        ["rl.decisions", "--dataset", "redial", "--model", other, "--splits", "train,valid", "--max_train", "64", "--max_valid", "32"],
        [
            "rl.train",
            "--config",
            "rl/configs/manager_redial.yaml",
            "--model",
            other,
            "--sim_rounds",
            "0",
            "--sft_epochs",
            "5",
            "--rl_epochs",
            "3",
        ],
    ):
        done = subprocess.run([sys.executable, "-m", *cmd], env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-2000:]
    head = home / "managers" / "redial" / "other-llm"
    meta = json.loads((head / "manager.json").read_text())
    assert meta["model"] == other and meta["model_sha256"] == weights_sha256(source / "model.safetensors")
    assert "rl.decisions --dataset redial --model " + other in meta["command"]
    assert (home / "decisions" / "redial" / "other-llm" / "train.features.pt").is_file()

    monkeypatch.setenv("LLMCRS_HOME", str(home))
    monkeypatch.delenv("LLMCRS_MANAGER_DIR", raising=False)
    g = build_crs_graph(model=other, manager="trained", data_root=str(real_root), checkpointer=InMemorySaver())
    out = g.invoke({"messages": [HumanMessage("I loved Get Out (2017), something like it?")]}, {"configurable": {"thread_id": "k"}},
                   context=Context(generate=False))  # fmt: skip
    assert out["trajectory"][0]["method"] == "head" and g.resources.trained.meta["model"] == other  # type: ignore[attr-defined]
    third = build_crs_graph(model=str(models["third-llm"]), manager="trained", data_root=str(real_root), checkpointer=InMemorySaver())
    with pytest.raises(ManagerError) as refused:
        third.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"thread_id": "t"}}, context=Context(generate=False))
    assert f"python -m rl.decisions --dataset redial --model {models['third-llm']}" in str(refused.value)
    assert "--manager prompt" in str(refused.value)


def test_a_fixed_expert_that_is_not_offered_gives_way_to_the_best_validated_one():
    """The guard fixed ``c`` (the learned matching lost to it out of fold); a graph that does not offer ``c`` (withheld
    or untrained there) takes the offered expert with the best validation HIT@10, not the distrusted learned matching."""
    from types import SimpleNamespace

    from langchain_core.tools import tool

    from agent.deciders import HeadManager

    head = ManagerHead(8, 2, ["a", "b", "c"], hidden=8).eval()
    with torch.no_grad():
        head.match_bias[2] = 20.0
    assert head.fixed_expert == "c"
    tools = []
    for name, hit in (("a", 0.30), ("b", 0.10), ("d", 0.90)):  # d: unknown to the head, never chosen by it

        @tool(name)
        def rec(dialogue_context: str) -> str:
            """A recommender."""
            return dialogue_context

        rec.metadata = {"subtask": RECOMMENDATION, "valid_hit@10": hit}  # as tools.learned.learned_tool records it
        tools.append(rec)

    def unused(*args):  # the learned matching is not consulted
        raise AssertionError("the learned matching was read")

    manager = HeadManager(SimpleNamespace(trained=SimpleNamespace(head=head, distributions=unused), model=None))  # type: ignore[arg-type]
    expert, rec_, blend = manager.match({"messages": []}, tools[::-1])  # type: ignore[arg-type]
    assert (expert, rec_["method"], blend) == ("a", "validated", None) and "c, which the matching guard fixed" in rec_["error"]
    with torch.no_grad():
        head.match_bias.zero_()  # nothing fixed: the head's own matching decides (here: it is read)
    assert head.fixed_expert is None
    with pytest.raises(AssertionError, match="learned matching was read"):
        manager.match({"messages": []}, tools)  # type: ignore[arg-type]
