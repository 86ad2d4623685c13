"""Experts on real data: learned recommenders train on a small slice in seconds; the others on real dialogues."""

from __future__ import annotations

import pytest

from crsdata.loaders import load_samples
from crsdata.paths import DataError
from tools.dialogue import format_turns
from tools.learned import CheckpointMissing, TrainConfig

TINY = TrainConfig(dim=16, epochs=1, batch_size=64, max_train_rows=300, seed=0)


@pytest.fixture
def experts_home(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCRS_EXPERTS", str(tmp_path / "experts"))
    return tmp_path / "experts"


def _check_ranking(items, context_text, env):
    assert len(items) == 50 and len(set(items)) == 50
    assert not set(items) & set(env.mentioned_items(context_text))
    assert set(items) <= set(env.item_attributes)


def test_kbrd_trains_and_ranks(redial_env, experts_home):
    from tools import kbrd

    result = kbrd.train(redial_env, TINY)
    assert 0.0 <= result["valid_hit@10"] <= 1.0 and result["history"]
    assert (experts_home / "redial" / "kbrd" / "model.pt").is_file()
    tool = kbrd.make_kbrd_recommender(redial_env)
    assert f"validation HIT@10 {result['valid_hit@10']:.3f}" in tool.description
    ctx = format_turns(load_samples("redial", "test", redial_env.root, limit=1)[0].context)
    _check_ranking(tool.invoke({"category": "movie", "dialogue_context": ctx})["items"], ctx, redial_env)
    # no linked entity: the item biases still rank
    assert len(tool.invoke({"category": "movie", "dialogue_context": "User: hello", "top_k": 5})["items"]) == 5


def test_kbrd_weights_change_with_training(redial_env, experts_home):
    import torch

    from tools import kbrd

    model, *_ = kbrd.build(redial_env, 16, 4, 1)
    before = model.emb.weight.detach().clone()
    kbrd.train(redial_env, TINY)
    state, *_ = __import__("tools.learned", fromlist=["load_checkpoint"]).load_checkpoint("redial", "kbrd")
    assert not torch.allclose(before, state["emb.weight"])


def test_sasrec_trains_and_ranks(redial_env, experts_home):
    from tools import sasrec

    result = sasrec.train(redial_env, TINY)
    assert result["history"]
    tool = sasrec.make_sasrec_recommender(redial_env)
    ctx = "User: I loved The Shining (1980) and Alien (1979)"
    _check_ranking(tool.invoke({"category": "movie", "dialogue_context": ctx})["items"], ctx, redial_env)


def test_retriever_on_inspired(real_root, experts_home):
    from tools import retriever
    from tools.env import expert_env

    env = expert_env("inspired", str(real_root))
    res = retriever.train(env, limit=20)
    assert 0.0 <= res["valid_hit@10"] <= 1.0
    tool = retriever.make_text_retriever(env)
    items = tool.invoke({"category": "movie", "dialogue_context": "User: a funny animated movie for the whole family", "top_k": 10})[
        "items"
    ]
    assert len(items) == 10


def test_absent_checkpoint_names_the_train_command(redial_env, experts_home):
    from tools import kbrd

    with pytest.raises(CheckpointMissing, match=r"python -m tools.train kbrd --dataset redial"):
        kbrd.make_kbrd_recommender(redial_env)
    with pytest.warns(UserWarning, match="python -m tools.train"):
        from tools import default_experts

        names = [t.name for t in default_experts("redial", str(redial_env.root))]
    assert "popularity_recommender" in names and "kbrd_recommender" not in names


def test_kbrd_needs_a_kg(real_root, experts_home):
    from tools import kbrd
    from tools.env import expert_env

    with pytest.raises(DataError, match="no knowledge graph"):
        kbrd.train(expert_env("inspired", str(real_root)), TINY)


def test_elicitation_on_a_real_dialogue(redial_env):
    from tools.elicitation import next_question

    sample = load_samples("redial", "test", redial_env.root, limit=2)[1]
    ctx = format_turns(sample.context)
    out = next_question(redial_env, ctx)
    assert "Super Troopers (2001)" in out["preferences"]["items"]
    assert out["attribute"] in ("genre", "decade", "director", "cast")
    assert len(out["options"]) == 3 and all(o in out["text"] for o in out["options"])
    assert out["information_bits"] > 0
    dislike = next_question(redial_env, "User: I don't like horror movies")
    assert dislike["preferences"]["disliked"] == ["horror"]


def test_explanation_uses_shared_attributes(redial_env):
    from tools.explanation import explain

    out = explain(redial_env, "A Clockwork Orange", "User: I loved The Shining (1980), Kubrick is a genius")
    assert out["item"] == "A Clockwork Orange (1971)"
    assert any(
        e["path"] == ["A Clockwork Orange (1971)", "director", "Stanley Kubrick", "director", "The Shining (1980)"] for e in out["evidence"]
    )
    assert "Stanley Kubrick directed both" in out["text"]
    missing = explain(redial_env, "Zzyzx Nonexistent Film", "User: hi")
    assert missing["item"] is None and "which title" in missing["text"]
    assert explain(redial_env, "", "User: hi")["item"] is None


def test_detail_search_answers_and_refuses_clearly(redial_env):
    from tools.detail import make_catalog_search

    tool = make_catalog_search(redial_env)
    assert tool.invoke({"item_name": "the shining", "item_attribute": "year"})["values"] == ["1980"]
    assert "Jack Nicholson" in tool.invoke({"item_name": "The Shining", "item_attribute": "who starred in it"})["values"]
    assert "could not find" in tool.invoke({"item_name": "Qwxyz Unknown", "item_attribute": "director"})["text"]
    assert "I can tell you" in tool.invoke({"item_name": "The Shining", "item_attribute": "budget"})["text"]
    assert "Which title" in tool.invoke({"item_name": " ", "item_attribute": "director"})["text"]


def test_popularity_respects_likes_and_dislikes(redial_env):
    from tools.popularity import rank_by_preferences

    horror = rank_by_preferences(redial_env, "User: I love horror movies", 10)
    assert all("horror" in redial_env.item_attributes[i]["genre"] for i in horror)
    no_horror = rank_by_preferences(redial_env, "User: I hate horror movies", 50)
    assert not any("horror" in redial_env.item_attributes[i]["genre"] for i in no_horror)
