"""The preference state: parsing what the user states, honouring it in every ranking, one film one item."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.context import Context
from tests.conftest import fake_llm
from tools.preferences import empty, fold, stated_first, year_range

NOW = 2019


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        ("I'm in the mood for something from the 80s.", None, (1980, 1989, "the 1980s")),
        ("Any horror movies from the 90's?", None, (1990, 1999, "the 1990s")),
        ("something from the 1970s please", None, (1970, 1979, "the 1970s")),
        ("I love the eighties", None, (1980, 1989, "the 1980s")),
        ("early 2000s maybe", None, (2000, 2003, "the early 2000s")),
        ("a late 90s thriller", None, (1996, 1999, "the late 1990s")),
        ("Something from the 2010s?", None, (2010, 2019, "the 2010s")),
        ("anything before 2000?", None, (None, 1999, "before 2000")),
        ("only movies after 2010", None, (2011, None, "after 2010")),
        ("something released since 2015", None, (2015, None, "since 2015")),
        ("between 1990 and 1995", None, (1990, 1995, "from 1990 to 1995")),
        ("anything from 1999?", None, (1999, 1999, "from 1999")),
        ("Something recent please", None, (NOW - 4, None, "recent")),
        ("what's the latest good one?", None, (NOW - 4, None, "recent")),
        ("Actually, something newer", (1990, 1999), (2000, None, "newer")),
        ("something more recent please", (2014, 2017), (2018, None, "newer")),
        ("hmm, something older", (1990, 1999), (None, 1989, "older")),
        ("Not sure what I want. Maybe a classic?", None, (None, 1979, "a classic")),
        ("I loved Heat (1995)", None, None),
        ("I have 2 kids and a dog", None, None),
        ("Who directed it?", None, None),
    ],
)
def test_year_range_reads_decades_recency_and_bounds(text, reference, expected):
    assert year_range(text, NOW, reference) == expected


def _state(env, *turns):
    prefs = empty()
    for turn in turns:
        role, text = turn if isinstance(turn, tuple) else ("user", turn)
        prefs = fold(env, prefs, role, text)
    return prefs


def test_fold_reads_asked_genres_dislikes_anchors_and_overrides_in_order(redial_env):
    env = redial_env
    prefs = _state(env, "I didn't like The Room (2003) at all. Anything good?", "I prefer dramas.", "Something from the 90s?")
    assert prefs["disliked_items"] == ["The Room (2003)"] and prefs["genres"] == ["drama"] and prefs["years"] == [1990, 1999]
    later = fold(env, prefs, "user", "actually, something newer")
    assert later["years"] == [2000, None] and later["genres"] == ["drama"]  # the decade is replaced, the genre kept
    assert prefs["years"] == [1990, 1999]  # fold returns a new state
    switched = fold(env, later, "user", "I'd prefer a comedy this time.")
    assert switched["genres"] == ["comedy"]  # a genre asked later replaces the one asked before
    # a genre mentioned in passing is no constraint; one turned down is out
    assert _state(env, "I watched a horror movie yesterday, The Babadook (2014).")["genres"] == []
    assert _state(env, "I loved Titanic (1997), but no romance please.")["disliked_genres"] == ["romance"]
    assert _state(env, "Something like Titanic (1997)?")["anchors"] == ["Titanic (1997)"]
    offered = _state(env, "Any comedy?", ("recommender", "You might like Superbad (2007)."), "Seen it, something else?")
    assert offered["rejected"] == ["Superbad (2007)"] and "Superbad (2007)" in offered["seen"]


def test_a_decade_reaches_items_the_ranker_puts_last_and_relaxation_keeps_the_rest_in_order(redial_env):
    env = redial_env
    nineties = {i for i, y in env.year_of.items() if y and 1990 <= y <= 1999}
    order = sorted(env.item_attributes, key=lambda i: (i in nineties, env.popularity_rank[i]))  # every 1990s film last
    top = stated_first(env, "User: Any horror movies from the 90s?", lambda n: order[:n], 10)
    assert len(top) == 10 and all(i in nineties and "horror" in env.genres_of(i) for i in top)
    # no horror film of the 1990s with Tom Hanks: the years are relaxed first, then the genre; Tom Hanks stays
    top = stated_first(env, "User: A horror movie from the 90s with Tom Hanks?", lambda n: order[:n], 5)
    assert top and all("Tom Hanks" in env.people_of[i] for i in top)


def test_one_film_is_one_item_and_a_named_film_is_never_offered_under_another_entry(redial_env):
    env = redial_env
    assert (
        env.film_key["Titanic"] == env.film_key["Titanic (1997)"] and env.film_key["Jurassic Park"] == env.film_key["Jurassic Park (1993)"]
    )
    assert env.film_key["Scream (1981)"] != env.film_key["Scream (1996)"]  # a remake is another film
    order = ["Jurassic Park", "Jurassic Park (1993)", "Titanic", "Heat (1995)", "Titanic (1997)"]
    assert stated_first(env, "User: I liked Heat", lambda n: order[:n], 4)[:2] == ["Jurassic Park", "Titanic"]
    assert stated_first(env, "User: Something similar to Titanic (1997)", lambda n: order[:n], 4)[:2] == ["Jurassic Park", "Heat (1995)"]


CTX = Context(top_k=10, generate=False)


@pytest.fixture
def rule_graph(real_root, redial_env):
    from agent.graph import build_crs_graph
    from tools import default_experts

    def graph(tools=None):
        tools = tools or default_experts("redial", str(real_root), learned=False)
        return build_crs_graph(model=fake_llm(), tools=tools, checkpointer=InMemorySaver(), data_root=str(real_root), manager="rule")

    return graph


def _turn(graph, text, thread="t"):
    return graph.invoke({"messages": [HumanMessage(text)]}, {"configurable": {"thread_id": thread}}, context=CTX)


def test_three_turns_through_a_checkpointer_drama_then_the_90s_then_newer(rule_graph, redial_env):
    env, graph = redial_env, rule_graph()
    out = _turn(graph, "I'd like a drama.")
    top = out["expert_output"]["items"][0]
    assert out["preferences"]["genres"] == ["drama"] and "drama" in env.genres_of(top)
    assert out["trajectory"][0]["preferences"]["genres"] == ["drama"]  # shown in the trajectory
    assert "a drama movie, as you asked" in out["response"]
    out = _turn(graph, "Something from the 90s?")
    top = out["expert_output"]["items"][0]
    assert out["preferences"]["years"] == [1990, 1999] and "drama" in env.genres_of(top) and 1990 <= env.year_of[top] <= 1999
    assert "a 1990s drama movie, as you asked" in out["response"]
    out = _turn(graph, "Actually, something newer.")
    top = out["expert_output"]["items"][0]
    assert out["preferences"]["years"] == [2000, None] and "drama" in env.genres_of(top) and env.year_of[top] >= 2000
    assert len(set(out["offered"])) == 3  # a new film each turn


def test_relaxation_says_what_it_relaxed(rule_graph, redial_env):
    out = _turn(rule_graph(), "A horror movie from the 1950s with Tom Hanks, please.")
    top = out["expert_output"]["items"][0]
    assert "Tom Hanks" in redial_env.people_of[top]  # the person asked for holds; the years and the genre were relaxed
    assert out["expert_output"]["relaxed"] == "I have no 1950s horror movie with Tom Hanks left that you have not seen."
    assert out["response"].startswith("I have no 1950s horror movie with Tom Hanks left") and top in out["response"]


def test_duplicates_of_a_film_never_reach_the_user_twice_nor_as_a_film_they_named(rule_graph, real_root):
    from tests.test_graph import fixed_recommender

    tool = fixed_recommender("fixed_rec", ["Titanic", "Jurassic Park (1993)", "Jurassic Park", "Titanic (1997)", "Heat (1995)"])
    graph = rule_graph([tool])
    out = _turn(graph, "Recommend me something similar to Titanic (1997).")
    assert out["expert_output"]["items"][:2] == ["Jurassic Park (1993)", "Heat (1995)"]
    out = _turn(graph, "Anything else?")
    assert out["expert_output"]["items"][0] == "Heat (1995)"  # Jurassic Park was offered, under either entry


def test_wishes_generates_satisfiable_requests_and_scores_the_top_item_against_the_catalog(redial_env):
    from eval.wishes import MIN_ITEMS, generate, score
    from sim.systems import Prediction

    env = redial_env
    requests = generate(env, 4, seed=1)
    assert generate(env, 4, seed=1)[0].turns == requests[0].turns  # seeded
    kinds = {r.kind for r in requests}
    assert {"genre", "decade", "genre + decade", "recency", "actor", "director", "liked item + genre"} <= kinds
    assert {"liked item + disliked genre", "three-turn refinement"} <= kinds
    for r in requests:
        for check in filter(None, r.checks):
            assert sum(map(check, env.item_attributes)) >= MIN_ITEMS // 2  # every request can be met
    decade = next(r for r in requests if r.kind == "decade")
    good = next(i for i in env.ranked_by_popularity if decade.checks[0](i))
    bad = next(i for i in env.ranked_by_popularity if not decade.checks[0](i))
    rows = score(env, decade, [Prediction(ranked=[good, bad], response="", subtask="recommendation")])
    assert rows == [("decade", 1.0, 0.1, good)]
    assert score(env, decade, [Prediction(ranked=[bad], response="", subtask="recommendation")])[0][1] == 0.0
    assert score(env, decade, [Prediction(ranked=[good], response="What do you like?", subtask="preference elicitation")])[0][1] == 0.0
    liked = next(r for r in requests if r.kind == "liked item + genre")
    named = env.linker.link(liked.turns[0]).items[0]
    same_film = [i for i in env.item_attributes if env.film_key[i] == env.film_key[named]]
    assert all(score(env, liked, [Prediction(ranked=[i], response="", subtask="recommendation")])[0][1] == 0.0 for i in same_film)


def test_eval_wishes_runs_a_recommender_through_every_kind(real_root, tmp_path):
    """The popularity expert honours the preference state, so it meets the single-turn decade and genre
    requests; without the state's years it met none of the decade requests."""
    import json

    from eval.wishes import WishesArguments, evaluate

    args = WishesArguments(systems=["expert:popularity_recommender"], per_kind=6, data_root=str(real_root), results_dir=tmp_path)
    result = evaluate(args, progress=False)
    rows = {r["kind"]: r for r in result["table"]}
    assert rows["decade"]["top1"] == 1.0 and rows["genre + decade"]["top1"] == 1.0 and rows["genre"]["top1"] == 1.0
    assert rows["three-turn refinement, turn 3"]["n"] == rows["three-turn refinement, turn 4"]["n"] > 0
    assert json.loads((tmp_path / "wishes" / "redial" / "wishes.json").read_text())["table"] == result["table"]
    assert (tmp_path / "wishes" / "redial" / "tables.md").read_text().startswith("# Requests met on redial")


@pytest.mark.parametrize(
    ("said", "key", "value"),
    [
        ("I liked 10 Things I Hate About You (1999), but I'd prefer a crime movie now.", "genres", ["crime"]),  # "Hate" is the title's
        ("I liked No Country for Old Men (2007), but I'd prefer an animation movie now.", "genres", ["animation"]),  # "No" too
        ("I really like Mike Myers. What should I watch?", "people", ["Mike Myers"]),  # not the film "Like Mike"
        ("Anything with Samuel L. Jackson?", "people", ["Samuel L. Jackson"]),  # not cut at the initial
    ],
)
def test_titles_and_initials_do_not_bend_what_the_user_asked(redial_env, said, key, value):
    prefs = fold(redial_env, empty(), "user", said)
    assert prefs[key] == value and not prefs["disliked_genres"] and not prefs["disliked_people"]


@pytest.mark.parametrize(
    ("said", "genres", "years", "people", "roles"),
    [
        # a taste stated, not asked: a wish when it names no item
        ("I like horror movies from the 80s.", ["horror"], [1980, 1989], [], {}),
        ("I'm into 90s comedies.", ["comedy"], [1990, 1999], [], {}),
        ("I'd enjoy a thriller made in the 2000s.", ["thriller"], [2000, 2009], [], {}),
        ("Mostly I watch dramas from the 1970s.", ["drama"], [1970, 1979], [], {}),
        ("a horror film from 1980s", ["horror"], [1980, 1989], [], {}),
        ("What about a comedy from the last decade?", ["comedy"], [NOW - 9, None], [], {}),
        ("I want something not too old", [], [NOW - 4, None], [], {}),
        ("A good romcom?", ["romance"], None, [], {}),
        # an audience wish names the family genre
        ("Something for the family?", ["family"], None, [], {}),
        ("A movie I can watch with my kids.", ["family"], None, [], {}),
        # a person's part
        ("Any movies by Wes Craven?", [], None, ["Wes Craven"], {"Wes Craven": "director"}),
        ("Anything starring Tom Hanks?", [], None, ["Tom Hanks"], {"Tom Hanks": "cast"}),
        ("Something written by Aaron Sorkin?", [], None, ["Aaron Sorkin"], {"Aaron Sorkin": "writer"}),
        ("I really like Tom Hanks.", [], None, ["Tom Hanks"], {}),
        # mentions stay mentions
        ("I loved Get Out (2017), a great horror movie.", [], None, [], {}),
        ("That one was released in 2018.", [], None, [], {}),
    ],
)
def test_stated_tastes_audiences_and_parts_are_wishes(redial_env, said, genres, years, people, roles):
    prefs = fold(redial_env, empty(), "user", said)
    assert (prefs["genres"], prefs["years"], prefs["people"], prefs["roles"]) == (genres, years, people, roles)


def test_a_person_asked_as_director_meets_the_wish_only_with_films_they_directed(redial_env):
    prefs = fold(redial_env, empty(), "user", "Any movies directed by Clint Eastwood?")
    ranked = stated_first(redial_env, "", lambda n: redial_env.ranked_by_popularity[:n], 10, prefs)
    assert ranked and all("Clint Eastwood" in redial_env.item_attributes[i]["director"] for i in ranked)
    acted = fold(redial_env, empty(), "user", "Any movies starring Clint Eastwood?")
    ranked = stated_first(redial_env, "", lambda n: redial_env.ranked_by_popularity[:n], 10, acted)
    assert all("Clint Eastwood" in redial_env.item_attributes[i]["cast"] for i in ranked)


def test_eval_wishes_says_each_kind_in_held_out_phrasings_too(redial_env):
    from eval.wishes import PHRASINGS, generate

    standard, heldout = generate(redial_env, 8, 0), generate(redial_env, 8, 0, "heldout")
    assert {r.kind for r in standard} == {r.kind for r in heldout}
    written = {t for r in standard for t in r.turns}
    assert not written & {t for r in heldout for t in r.turns}  # none said the same way
    assert set(PHRASINGS["standard"]) == set(PHRASINGS["heldout"])
    with pytest.raises(ValueError, match="unknown phrasings"):
        generate(redial_env, 1, 0, "slang")


def test_a_taste_stated_beside_liked_items_ranks_nothing_but_a_request_beside_them_filters(redial_env):
    """ "I like family movies. My favorites are The Goonies (1985)": the films say more than the genre, which
    filters nothing (it cost corpus HIT); "I loved Coco (2017). Something for the family?" asks, and filters."""
    stated = fold(redial_env, empty(), "user", "I like all kinds of movies, especially family movies. My favorite is The Goonies (1985).")
    assert stated["genres"] == [] and "family" in stated["liked_genres"]
    asked = fold(redial_env, empty(), "user", "I loved Coco (2017). Something for the family?")
    assert asked["genres"] == ["family"]


def test_a_person_asked_instead_replaces_the_one_asked_before(redial_env):
    prefs = fold(redial_env, empty(), "user", "Any movies by Wes Craven?")
    assert fold(redial_env, prefs, "user", "Something with Tom Hanks instead.")["people"] == ["Tom Hanks"]
    assert fold(redial_env, prefs, "user", "Anything with Tom Hanks?")["people"] == ["Wes Craven", "Tom Hanks"]


def test_a_genre_asked_while_turning_down_an_offer_refines_the_one_before(redial_env):
    """A user who wants a horror thriller says "a horror movie", turns the offer down, then says "a thriller":
    horror thrillers come first; "I'd prefer a comedy this time" is a change of mind and keeps nothing."""
    prefs = fold(redial_env, empty(), "user", "I'm in the mood for a horror movie.")
    prefs = fold(redial_env, prefs, "assistant", "You might like It (2017).")
    prefs = fold(redial_env, prefs, "user", "Not It (2017), I don't think that one is for me. I'm in the mood for a thriller movie.")
    assert prefs["genres"] == ["thriller"] and prefs["lean"] == ["horror"]
    ranked = stated_first(redial_env, "", lambda n: redial_env.ranked_by_popularity[:n], 5, prefs)
    assert all({"horror", "thriller"} <= redial_env.genres_of(i) for i in ranked)
    offered = fold(redial_env, prefs, "assistant", "You might like Psycho (1960).")
    liked = fold(redial_env, offered, "user", "Not those. I really enjoyed Jaws (1975).")
    assert liked["genres"] == ["thriller"]  # a liked film named while turning down an offer does not end the wish
    changed = fold(redial_env, prefs, "user", "Actually, I'd prefer a comedy this time.")
    assert changed["genres"] == ["comedy"] and changed["lean"] == []
