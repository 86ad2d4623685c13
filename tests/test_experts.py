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
    tool = kbrd.make_tool(redial_env)
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
    tool = sasrec.make_tool(redial_env)
    ctx = "User: I loved The Shining (1980) and Alien (1979)"
    _check_ranking(tool.invoke({"category": "movie", "dialogue_context": ctx})["items"], ctx, redial_env)


TINY_ENCODER = TrainConfig(encoder_epochs=1, encoder_batch_size=16, max_train_rows=64, seed=0, query_epochs=2, query_max_texts=400)


def test_the_static_query_encoder_learns_to_retrieve_against_fixed_item_vectors():
    """Queries name their item's token among noise tokens; the untrained bag of tokens does not point at the
    item's (random, fixed) vector, the trained encoder does, and the epoch kept is the best on validation."""
    import torch

    from tools.query_encoder import QueryTraining, StaticQueryEncoder, train_query_encoder

    gen = torch.Generator().manual_seed(0)
    n_items, vocab, dim = 12, 40, 16
    items = torch.nn.functional.normalize(torch.randn(n_items, dim, generator=gen), dim=-1)
    init = torch.randn(vocab, dim, generator=gen)

    def queries(n, seed):
        g = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(n):
            target = int(torch.randint(n_items, (1,), generator=g))
            noise = torch.randint(n_items, vocab, (3,), generator=g).tolist()
            out.append(([target, *noise], target))
        return out

    train, held_out = queries(300, 1), queries(100, 2)

    def accuracy(model: StaticQueryEncoder) -> float:
        top = (model([ids for ids, _ in held_out]) @ items.T).argmax(-1)
        return float((top == torch.tensor([t for _, t in held_out])).float().mean())

    data = QueryTraining([ids for ids, _ in train], items[[t for _, t in train]], train, items)
    model, history = train_query_encoder(init, data, accuracy, epochs=6, lr=0.05, ce_weight=0.3, seed=0, batch_size=32)
    assert history[0]["epoch"] == 0 and history[0]["valid_hit@10"] < 0.3  # the untrained bag of tokens
    assert accuracy(model) == max(h["valid_hit@10"] for h in history) > 0.9
    frozen, _ = train_query_encoder(init, data, accuracy, epochs=2, lr=0.0, ce_weight=0.3, seed=0, batch_size=32)
    assert accuracy(frozen) == history[0]["valid_hit@10"]  # no update, no gain: the gain above is the training's


def test_trained_retriever_beats_the_untrained_encoder_and_popularity(real_root, experts_home):
    import json
    import shutil

    from tools import retriever
    from tools.env import expert_env

    env = expert_env("inspired", str(real_root))
    res = retriever.train(env, TrainConfig(encoder_epochs=3, seed=0, query_max_texts=3000))
    # every validation row of INSPIRED (49): fine-tuning moves HIT@10, and past the popularity floor
    assert res["floor"]["rows"] == 49
    assert res["valid_hit@10"] > res["valid_hit@10_untrained"]
    assert res["floor"]["hit@10"] > res["floor"]["floor_hit@10"]
    # the static query encoder is used exactly when it is at least as good on validation as the transformer
    static = res["valid_hit@10_static_query"] >= res["valid_hit@10_transformer_query"]
    assert (retriever.trained_retriever(env)[1] is not None) == static
    assert res["valid_hit@10"] == pytest.approx(res["valid_hit@10_static_query" if static else "valid_hit@10_transformer_query"])
    # retraining with the same fine-tuning settings keeps the fine-tuned transformer and trains the queries only
    before = json.loads((experts_home / "inspired" / "retriever" / "config.json").read_text())
    again = retriever.train(env, TrainConfig(encoder_epochs=3, seed=0, query_epochs=1, query_max_texts=300))
    after = json.loads((experts_home / "inspired" / "retriever" / "config.json").read_text())
    assert after["encoder_trained_at"] == before["encoder_trained_at"] and after["trained_at"] != before["trained_at"]
    assert again["valid_hit@10_transformer_query"] == res["valid_hit@10_transformer_query"]  # the same transformer
    assert len(again["query_history"]) == 2
    tool = retriever.make_tool(env)
    items = tool.invoke({"category": "movie", "dialogue_context": "User: a funny animated movie for the whole family", "top_k": 10})[
        "items"
    ]
    assert len(items) == 10
    # a checkpoint trained on another catalog (here: copied to ReDial) is refused with the retrain command
    shutil.copytree(experts_home / "inspired" / "retriever", experts_home / "redial" / "retriever")
    with pytest.raises(CheckpointMissing, match=r"trained on another catalog.*python -m tools.train retriever --dataset redial"):
        retriever.make_tool(expert_env("redial", str(real_root)))


def test_absent_checkpoint_names_the_train_command(redial_env, experts_home):
    from tools import kbrd

    with pytest.raises(CheckpointMissing, match=r"python -m tools.train kbrd --dataset redial"):
        kbrd.make_tool(redial_env)
    with pytest.warns(UserWarning, match="python -m tools.train"):
        from tools import default_experts

        names = [t.name for t in default_experts("redial", str(redial_env.root))]
    assert "popularity_recommender" in names and "kbrd_recommender" not in names


def test_floor_evidence_on_real_validation_turns(real_root):
    from tools.env import expert_env
    from tools.learned import floor_evidence, split_samples
    from tools.popularity import floor_rank

    env = expert_env("inspired", str(real_root))
    answers = {format_turns(s.context): s.targets for s in split_samples(env, "valid")}
    oracle = floor_evidence(env, lambda text, k: answers[text][:k])
    assert oracle["rows"] == sum(len(t) for t in answers.values()) == 49
    assert oracle["hit@10"] == 1.0 and oracle["floor_hit@10"] < 0.1
    assert oracle["pvalue"] < 1e-6 and oracle["beats"]
    same = floor_evidence(env, lambda text, k: floor_rank(env, text, k))
    assert same["hit@10"] == same["floor_hit@10"] and same["pvalue"] == 1.0 and not same["beats"]
    nothing = floor_evidence(env, lambda text, k: [])
    assert nothing["hit@10"] == 0.0 and not nothing["beats"]


def test_experts_below_the_floor_are_withheld(real_root, experts_home):
    import json
    import warnings

    from tools import default_experts, retriever
    from tools.env import expert_env

    env = expert_env("inspired", str(real_root))
    result = retriever.train(env, TINY_ENCODER, limit=20)
    assert set(result["floor"]) == {"rows", "hit@10", "floor_hit@10", "pvalue", "alpha", "beats"}
    metrics_file = experts_home / "inspired" / "retriever" / "metrics.json"

    def offered(evidence, **kw):
        metrics = json.loads(metrics_file.read_text())
        metrics.pop("floor", None)
        if evidence is not None:
            metrics["floor"] = evidence
        metrics_file.write_text(json.dumps(metrics))
        return "text_retriever" in [t.name for t in default_experts("inspired", str(real_root), **kw)]

    below = {"rows": 49, "hit@10": 0.06, "floor_hit@10": 0.02, "pvalue": 0.16, "alpha": 0.05, "beats": False}
    with pytest.warns(UserWarning, match=r"retriever for inspired is withheld: validation HIT@10 0.0600 vs popularity 0.0200 on 49 rows"):
        assert not offered(below)
    assert offered(below, validated_only=False)
    assert offered({**below, "pvalue": 0.01, "beats": True})
    with pytest.warns(UserWarning, match=r"no comparison with the popularity floor.*python -m tools.train retriever --dataset inspired"):
        assert not offered(None)
    # INSPIRED has no KG: no warning tells the user to train a KBRD that cannot exist
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        offered(None)
    assert not any("kbrd" in str(w.message) for w in caught)


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


def test_the_elicitor_asks_the_question_whose_answer_tells_most(redial_env):
    """The user answers with the value they have in mind, not one of the examples: a director's name
    splits the candidates far more finely than a genre, so it is asked first; once asked, it is not again."""
    from tools.elicitation import QUESTION, answer_information, next_question
    from tools.popularity import rank_by_preferences

    ctx = "User: Hi, I'd like to watch a movie tonight."
    out = next_question(redial_env, ctx)
    candidates = rank_by_preferences(redial_env, ctx, 200)
    bits = {k: answer_information([min(redial_env.item_attributes[c][k], default=None) for c in candidates])[0] for k in QUESTION}
    assert out["attribute"] == max(bits, key=lambda k: bits[k]) and out["information_bits"] == round(bits[out["attribute"]], 3)
    assert min(bits["director"], bits["cast"]) > max(bits["genre"], bits["decade"]) + 2
    then = next_question(redial_env, f"{ctx}\nAssistant: {out['text']}\nUser: not sure", asked=[out["attribute"]])
    assert then["attribute"] not in (out["attribute"], None) and then["information_bits"] <= out["information_bits"]


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


def test_an_explanation_is_one_sentence_that_names_each_person_once(redial_env):
    """Not a KG dump ("Martin Scorsese directed both ...; Martin Scorsese wrote both ..."): one sentence, at
    most two pieces of evidence, each value once, the shared genres in one piece."""
    from agent.text import sentences
    from tools.explanation import explain

    out = explain(redial_env, "Casino (1995)", "User: I loved Goodfellas (1990) and The Godfather (1972)")
    assert len(sentences(out["text"])) == 1 and out["text"].count("Martin Scorsese") == 1
    values = [e["path"][2] for e in out["evidence"]]
    assert len(values) == len(set(values))
    genres = explain(redial_env, "Forrest Gump (1994)", "User: I loved Titanic (1997)")["text"]
    assert genres == "Forrest Gump (1994) and Titanic (1997) are both drama and romance movies."


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


def _sorted_by_preferences(env, text, top_k):
    """rank_by_preferences's definition, item by item over the whole catalog (the reference)."""
    prefs = env.preferences(text)
    disliked = set(prefs.disliked)
    people = {p for p in prefs.people if p not in disliked}
    genres = {g for g in prefs.genres if g not in disliked} | {
        g for i in prefs.items if i not in disliked for g in env.item_attributes[i]["genre"]
    }
    named = set(env.mentioned_items(text))
    keyed = []
    for rank, name in enumerate(env.ranked_by_popularity):
        a = env.item_attributes[name]
        theirs = a["director"] | a["cast"] | a["writer"]
        if name not in named and not disliked & (theirs | a["genre"]):
            keyed.append((-len(people & theirs), -len(genres & a["genre"]), rank, name))
    return [k[-1] for k in sorted(keyed)[:top_k]]


@pytest.mark.parametrize(
    "text",
    [
        "User: hi",
        "User: I loved Titanic (1997) and anything with Tom Hanks or Meg Ryan. No horror please.",
        "User: I hate comedies and Adam Sandler.\nAssistant: Have you seen Heat (1995)?\nUser: Yes! Something like it with Al Pacino?",
    ],
)
def test_popularity_by_preferences_equals_its_item_by_item_definition(redial_env, text):
    """The inverted indices give exactly the catalog-wide sort they replace (and the linker's memory
    hands every caller its own copy)."""
    from tools.popularity import rank_by_preferences

    assert rank_by_preferences(redial_env, text, 50) == _sorted_by_preferences(redial_env, text, 50)
    first = redial_env.linker.link(text)
    first.items.append("mutated")
    assert "mutated" not in redial_env.linker.link(text).items


@pytest.mark.parametrize(
    "text",
    [
        "User: Something with Tom Hanks or Meg Ryan please, but no horror.",
        "User: I hate Adam Sandler.\nAssistant: Have you seen Heat (1995)?\nUser: Yes! Something with Al Pacino?",
    ],
)
def test_stated_first_equals_its_item_by_item_definition(redial_env, text):
    """The inverted indices give exactly the catalog-wide sort they replace, over a ranking that also
    holds names outside the catalog (one entry a film, none of a film the dialogue named)."""
    from tools.preferences import stated_first

    env = redial_env
    order = ["Not A Catalog Item (1900)", *reversed(env.ranked_by_popularity)]  # any order the recommender likes
    prefs = env.preferences(text)
    disliked = set(prefs.disliked)
    people = {p for p in prefs.people if p not in disliked}
    assert people or disliked  # the sort is in play
    named = {env.film_key[i] for i in env.linker.link(text).items}  # every entry of a named film is out
    keyed, films = [], set()
    for position, name in enumerate(order[: len(env.item_attributes)]):  # what stated_first asks the recommender for
        a = env.item_attributes.get(name)
        if a is not None and not disliked & (a["director"] | a["cast"] | a["writer"] | a["genre"]):
            if env.film_key[name] in named | films:  # one film, one item: its first entry in the ranking
                continue
            films.add(env.film_key[name])
            keyed.append((-len(people & (a["director"] | a["cast"] | a["writer"])), position, name))
    assert stated_first(env, text, lambda n: order[:n], 50) == [name for *_, name in sorted(keyed)[:50]]


def test_bench_reports_offer_and_test_pvalue(real_root, experts_home, tmp_path):
    import json

    from tools import bench, retriever
    from tools.env import expert_env

    retriever.train(expert_env("inspired", str(real_root)), TINY_ENCODER, limit=20)
    out = tmp_path / "experts.json"
    args = ["--datasets", "inspired", "--limit", "30", "--data-root", str(real_root), "--out", str(out)]
    assert bench.main(args) == 0
    res = json.loads(out.read_text())
    # sasrec untrained, no KBRD; the retriever's index queried by its transformer beside it when it queries statically
    assert set(res) - {"inspired/retriever+transformer-query"} == {
        "inspired/preference_parsing", "inspired/popularity", "inspired/popularity+prefs", "inspired/retriever"}  # fmt: skip
    parsing = res["inspired/preference_parsing"]  # one user turn read into the preference state, timed on every test turn read
    assert parsing["turns"] > 0 and 0 < parsing["median_ms"] <= parsing["p95_ms"]
    assert res["inspired/popularity"]["offered"] == "floor" and res["inspired/popularity"]["test_hit@10_pvalue_vs_floor"] is None
    variant = res.get("inspired/retriever+transformer-query")  # present when the tool queries with its static encoder
    assert variant is None or (variant["offered"] == "variant" and variant["train_seconds"] is None)
    found = res["inspired/retriever"]
    assert found["offered"] == ("yes" if found["valid_vs_floor"]["beats"] else "withheld")
    assert 0.0 <= found["test_hit@10_pvalue_vs_floor"] <= 1.0 and found["n_rows"] > 0
    for k in (10, 50):  # a 95% bootstrap interval around each HIT
        low, high = found[f"hit@{k}_ci"]
        assert low <= found[f"hit@{k}"] <= high and (low < high or found[f"hit@{k}"] in (0.0, 1.0))


def test_bench_lets_an_expert_crash_raise(real_root, monkeypatch):
    """Only a missing checkpoint (or an expert the dataset cannot have) is "not available"; a crash is not."""
    from tools import bench, kbrd

    def crash(env):
        raise RuntimeError("boom: a bug in the expert")

    monkeypatch.setattr(kbrd, "load_ranker", crash)
    with pytest.raises(RuntimeError, match="boom"):
        bench.rankers("redial", str(real_root))


def test_trained_kbrd_beats_popularity_on_fixed_test_turns(redial_env, experts_home):
    """A trained recommender must beat the popularity floor on a fixed evaluation subset (fails if training
    does nothing: an untrained KBRD ranks by random embeddings)."""
    from crsdata.metrics import RecEvaluator
    from tools import kbrd
    from tools.popularity import floor_rank

    kbrd.train(redial_env, TrainConfig(dim=32, epochs=8, batch_size=64, seed=0))
    ranker = kbrd.load_ranker(redial_env)[0]
    trained, floor = RecEvaluator(), RecEvaluator()
    for sample in load_samples("redial", "test", redial_env.root, limit=600):
        text = format_turns(sample.context)
        trained.add(ranker.rank(text, 50), sample.targets, sample.context_items)
        floor.add(floor_rank(redial_env, text, 50), sample.targets, sample.context_items)
    got, base = trained.report(), floor.report()
    print(f"KBRD HIT@10 {got['hit@10']:.4f} HIT@50 {got['hit@50']:.4f} vs popularity {base['hit@10']:.4f} / {base['hit@50']:.4f}")
    assert got["hit@50"] > base["hit@50"] and got["hit@10"] > base["hit@10"]


def test_retrain_command_repeats_the_flags_each_checkpoint_was_trained_with(experts_home):
    import json

    from tools.learned import retrain_command

    for name, config in (("sasrec", TrainConfig().as_dict()), ("retriever", {**TrainConfig().as_dict(), "encoder_epochs": 3.0})):
        (experts_home / "inspired" / name).mkdir(parents=True)
        (experts_home / "inspired" / name / "config.json").write_text(json.dumps(config))
    assert retrain_command("inspired", ("kbrd", "sasrec", "retriever")) == (
        "python -m tools.train sasrec --dataset inspired && python -m tools.train retriever --dataset inspired --encoder-epochs 3.0"
    )


def test_a_damaged_checkpoint_is_one_error_naming_the_retrain_command(experts_home):
    from tools.learned import CheckpointDamaged, checkpoint_dir, load_checkpoint

    folder = checkpoint_dir("redial", "kbrd")
    folder.mkdir(parents=True)
    (folder / "model.pt").write_bytes(b"half a file")
    (folder / "config.json").write_text("{}")
    with pytest.raises(CheckpointDamaged, match=r"damaged .*python -m tools.train kbrd --dataset redial"):
        load_checkpoint("redial", "kbrd")


def test_every_learned_recommender_honours_stated_people_and_dislikes(redial_env, experts_home):
    """A learned recommender's list puts the person the user asked for first and drops a disliked
    genre (``tools.preferences.stated_first``), while the model alone does neither."""
    from tools import kbrd, sasrec

    ctx = "User: Hi! Something with Tom Hanks would be great. I hate horror movies."
    hanks = {n for n, a in redial_env.item_attributes.items() if "Tom Hanks" in a["cast"]}
    horror = {n for n, a in redial_env.item_attributes.items() if "horror" in a["genre"]}
    assert len(hanks) >= 10
    for module in (kbrd, sasrec):
        module.train(redial_env, TINY)
        ranker, _ = module.load_ranker(redial_env)
        own = ranker.model_rank(ctx, 50)
        assert len(set(own[:10]) & hanks) < 10 and set(own) & horror  # the model alone: no constraint
        top = ranker.rank(ctx, 50)
        assert set(top[:10]) <= hanks and not set(top) & horror
        whole = ranker.model_rank(ctx, len(redial_env.item_attributes))
        assert [i for i in whole if i in set(top[:10])] == top[:10]  # in the model's own order otherwise


def test_the_linker_links_a_full_name_after_capitalised_words_to_that_exact_item(redial_env):
    """'Heat (1995)' is Michael Mann's film even after "I loved", though the catalog has three films called
    Heat and another is more often mentioned; a short title ("It (2017)", "Her (2013)") after capitals too."""
    prefs = redial_env.preferences("User: I loved Heat (1995), anything like it?")
    assert prefs.items == ["Heat (1995)"]
    said = "User: Have you seen It (2017)? My friend Anna Loves Her (2013) and The Shining (1980)."
    assert redial_env.mentioned_items(said) == ["It (2017)", "Her (2013)", "The Shining (1980)"]
    rejected = redial_env.preferences("User: Not Click (2006), Mr. Deeds (2002), I don't think any of those is for me.")
    assert rejected.disliked == ["Click (2006)", "Mr. Deeds (2002)"]  # "Mr." does not end the sentence


def test_the_reranker_learns_to_beat_its_bases_and_refuses_stale_bases(redial_env, experts_home):
    import shutil

    from tools import kbrd, reranker, sasrec

    kbrd.train(redial_env, TINY)
    sasrec.train(redial_env, TINY)
    res = reranker.train(redial_env, TINY)
    # out-of-fold on every ReDial validation row: the trained scorer beats every base expert it
    # combines, the same scorer untrained, and the popularity floor
    assert res["valid_rows"] == 354 and set(res["bases_valid_hit@10"]) == {"popularity", "kbrd", "sasrec"}
    assert res["valid_hit@10"] > max(res["bases_valid_hit@10"].values())
    assert res["valid_hit@10"] > res["valid_hit@10_untrained"]
    assert res["floor"]["beats"]
    # the protocol scorer also ranks the items the dialogue named (the published figures count a target
    # named again) and learns when a turn repeats one; the tool never shows one
    assert res["protocol"]["valid_hit@10"] > res["valid_hit@10"]
    tool = reranker.make_tool(redial_env)
    ctx = format_turns(load_samples("redial", "test", redial_env.root, limit=1)[0].context)
    _check_ranking(tool.invoke({"category": "movie", "dialogue_context": ctx})["items"], ctx, redial_env)
    # named by the user in an earlier turn, and by the assistant: the protocol scorer may rank them, the tool never
    ctx = "User: I loved Titanic (1997).\nAssistant: Have you seen The Notebook (2004)?\nUser: Not yet. Anything else?"
    named = {"Titanic (1997)", "The Notebook (2004)"}
    rankings = reranker.bench_rankers(redial_env)
    assert set(rankings["+repeats"](ctx, 50)) & named
    assert not set(rankings[""](ctx, 50)) & named
    # a checkpoint of the single-scorer version is refused with the retrain command
    from tools.learned import load_checkpoint, save_checkpoint

    state, config, metrics = load_checkpoint("redial", "reranker")
    save_checkpoint("redial", "reranker", reranker.Scorer(config["n_features"], config["hidden"]).state_dict(), config, metrics)
    try:
        with pytest.raises(CheckpointMissing, match=r"does not fit this version.*python -m tools.train reranker --dataset redial"):
            reranker.make_tool(redial_env)
    finally:
        save_checkpoint("redial", "reranker", state, config, metrics)
    # a base retrained after the reranker changes its features: refused, with the retrain command
    kbrd.train(redial_env, TrainConfig(dim=16, epochs=1, batch_size=64, max_train_rows=300, seed=1))
    with pytest.raises(CheckpointMissing, match=r"other kbrd, sasrec checkpoints.*python -m tools.train reranker --dataset redial"):
        reranker.make_tool(redial_env)
    # a checkpoint copied to another dataset (another catalog) is refused the same way
    shutil.copytree(experts_home / "redial" / "reranker", experts_home / "opendialkg" / "reranker")
    from tools.env import expert_env

    with pytest.raises(CheckpointMissing, match=r"another catalog.*python -m tools.train reranker --dataset opendialkg"):
        reranker.make_tool(expert_env("opendialkg", str(redial_env.root)))


def test_the_search_keeps_the_checkpoint_that_validates_best(real_root, experts_home, monkeypatch):
    """``tools.train --search``: every combination trained, the best on validation kept with its record
    (the first run here, so the last run's checkpoint must be replaced by it); a learning rate of 0
    (nothing learned) loses to a real one; a failing run puts back the checkpoint found before."""
    import json

    from tools import train

    cfg = TrainConfig(dim=16, epochs=2, batch_size=64, max_train_rows=300, seed=0)
    folder = experts_home / "redial" / "sasrec"
    monkeypatch.setattr(train, "SEARCH_GRID", {"lr": (3e-3, 0.0)})
    res = train.search("sasrec", "redial", cfg, str(real_root))
    assert [r["lr"] for r in res["search"]] == [3e-3, 0.0]
    trained, untrained = (r["valid_hit@10"] for r in res["search"])
    assert trained > untrained
    assert json.loads((folder / "config.json").read_text())["lr"] == 3e-3  # the better run's checkpoint, copied back
    assert json.loads((folder / "metrics.json").read_text())["valid_hit@10"] == trained
    before = (folder / "model.pt").read_bytes()
    train_one, calls = train.train_one, []

    def second_fails(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("a run crashed")
        return train_one(*args, **kwargs)

    monkeypatch.setattr(train, "train_one", second_fails)
    monkeypatch.setattr(train, "SEARCH_GRID", {"lr": (1e-3, 3e-3)})
    with pytest.raises(RuntimeError, match="a run crashed"):
        train.search("sasrec", "redial", cfg, str(real_root))
    assert (folder / "model.pt").read_bytes() == before  # not the first run's: the one from before the search


def test_a_combining_expert_no_better_than_its_best_input_is_withheld():
    from tools.learned import offer_verdict

    floor = {"beats": True, "hit@10": 0.14, "floor_hit@10": 0.02, "rows": 49, "pvalue": 0.01, "alpha": 0.05}
    versus = {"expert": "retriever", "hit@10": 0.1429, "their_hit@10": 0.1224, "pvalue": 0.161, "beats": False}
    why = offer_verdict("reranker", "inspired", {"floor": floor, "versus": versus})
    assert why is not None and "withheld" in why and "retriever 0.1224" in why and "p=0.161" in why
    assert offer_verdict("reranker", "inspired", {"floor": floor, "versus": {**versus, "pvalue": 0.01, "beats": True}}) is None
    assert offer_verdict("kbrd", "redial", {"floor": floor}) is None  # an expert that combines nothing: the floor alone


def test_decision_data_gains_a_new_recommender_and_reranks_a_retrained_one_without_a_rebuild(
    redial_env, experts_home, tmp_path, monkeypatch
):
    import json

    from rl import decisions
    from tools import default_experts, kbrd
    from tools.dialogue import format_dialogue

    monkeypatch.setenv("LLMCRS_HOME", str(tmp_path / "home"))
    with pytest.warns(UserWarning, match="python -m tools.train"):  # nothing learned yet: popularity alone
        decisions.build_split("redial", "valid", str(redial_env.root), 40, 0, progress=False)
    before = decisions.load_split("redial", "valid")
    assert decisions.recommenders_of("redial", "valid") == ["popularity_recommender"]
    kbrd.train(redial_env, TrainConfig(dim=16, epochs=3, batch_size=64, max_train_rows=2000, seed=0))
    assert decisions.add_rankings("redial", "valid", str(redial_env.root), progress=False) == ["kbrd_recommender"]
    after = decisions.load_split("redial", "valid")
    first = {r["id"]: r["rankings"].get("kbrd_recommender") for r in after}
    assert decisions.recommenders_of("redial", "valid") == ["popularity_recommender", "kbrd_recommender"]
    samples = [(b, a) for b, a in zip(before, after, strict=True) if b["is_sample"]]
    assert samples and all(len(a["rankings"]["kbrd_recommender"]) == 50 for _, a in samples)
    assert all(
        a["responses"]["recommendation:kbrd_recommender"] == f"You might like {a['rankings']['kbrd_recommender'][0]}." for _, a in samples
    )
    for b, a in zip(before, after, strict=True):  # everything else is kept as it was
        a["rankings"].pop("kbrd_recommender", None), a["responses"].pop("recommendation:kbrd_recommender", None)
        assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert decisions.add_rankings("redial", "valid", str(redial_env.root), progress=False) == []  # current: nothing to do
    # retrained since: its rankings are recomputed, as the retrained expert ranks
    kbrd.train(redial_env, TrainConfig(dim=16, epochs=3, batch_size=64, max_train_rows=2000, seed=1))
    assert decisions.add_rankings("redial", "valid", str(redial_env.root), progress=False) == ["kbrd_recommender"]
    retrained = decisions.load_split("redial", "valid")
    assert decisions.recommenders_of("redial", "valid") == ["popularity_recommender", "kbrd_recommender"]
    tool = next(t for t in default_experts("redial", str(redial_env.root)) if t.name == "kbrd_recommender")
    for row in (r for r in retrained if r["is_sample"]):
        text = format_dialogue([(role, said) for role, said in row["context"]])
        assert row["rankings"]["kbrd_recommender"] == tool.invoke({"category": "movie", "dialogue_context": text, "top_k": 50})["items"]
    assert any(r["rankings"]["kbrd_recommender"] != first[r["id"]] for r in retrained if r["is_sample"])


def test_every_learned_expert_module_provides_the_declared_interface():
    """The registry's modules implement :class:`tools.learned.LearnedExpert` (adding an expert = one module)."""
    from tools.learned import LEARNED_EXPERTS, LearnedExpert, learned_module

    members = {n for n in vars(LearnedExpert) if not n.startswith("_")} | set(LearnedExpert.__annotations__)
    assert {"NAME", "train", "ranker", "make_tool", "bench_rankers"} <= members
    for name in LEARNED_EXPERTS:
        module = learned_module(name)
        assert not {m for m in members if not hasattr(module, m)}, name
        assert name == module.NAME
