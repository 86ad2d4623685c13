"""The simulated user (``python -m eval simulate``): it never says the target's title, it answers with
the target's attributes, and the episode counts successes, repeated questions and re-offered items."""

from __future__ import annotations

from dataclasses import replace

from agent.config import GraphConfig
from crsdata.loaders import load_samples
from crsdata.schema import Turn
from sim.dialogues import leaks, simulate
from sim.systems import Prediction
from sim.users import NUDGE, AttributeSimulator, mentions
from tools.subtasks import ELICITATION, RECOMMENDATION


def _targets(env, n):
    out = []
    for s in load_samples("redial", "test", env.root):
        item = env.catalog.get("redial", s.targets[0]) if s.targets else None
        if item is not None and not leaks(s, [item.title]):
            out.append((s, item))
        if len(out) == n:
            return out
    return out


def test_the_simulator_never_names_the_target_on_real_dialogues(redial_env):
    pairs = _targets(redial_env, 60)
    assert len(pairs) == 60
    said = 0
    for _, item in pairs:
        user = AttributeSimulator(item)
        for turn in range(6):
            wrong = Prediction(ranked=["Titanic (1997)"], response="You might like Titanic (1997).", subtask=RECOMMENDATION)
            ask = Prediction(ranked=[], response="What kind of movie?", subtask=ELICITATION)
            reply = user.reply(wrong if turn % 2 else ask)
            assert not mentions(reply, item.title) and not mentions(reply, item.name)
            if turn % 2:
                assert reply.startswith("Not Titanic (1997)")
            said += reply.count(".") + reply.count("?")
    assert said > 0


class _Scripted:
    """A fake system: recommends the target once the user has said its first attribute, else ``fallback``."""

    name = "scripted"

    def __init__(self, target, fact, fallback):
        self.target, self.fact, self.fallback = target, fact, fallback

    def predict(self, sample):
        if any(self.fact in t.text for t in sample.context if t.role == "user"):
            return Prediction(ranked=[self.target], response=f"You might like {self.target}.", subtask=RECOMMENDATION)
        return self.fallback


def test_episodes_count_success_repeats_and_re_recommendations(redial_env):
    sample, item = _targets(redial_env, 1)[0]
    fact = AttributeSimulator(item).facts[0]
    ask = Prediction(ranked=[], response="Any favourite genre?", subtask=ELICITATION)
    listens = simulate(_Scripted(sample.targets[0], fact, ask), sample, AttributeSimulator(item), turns=5, k=10)
    assert listens.success_turn == 2 and listens.questions == 1 and listens.recommendations == 1
    deaf = simulate(_Scripted("never", "no such fact", ask), sample, AttributeSimulator(item), turns=5, k=10)
    assert deaf.success_turn is None and deaf.questions == 5 and deaf.repeated_questions == 4
    same = Prediction(ranked=["Titanic (1997)"], response="You might like Titanic (1997).", subtask=RECOMMENDATION)
    stubborn = simulate(_Scripted("never", "no such fact", same), sample, AttributeSimulator(item), turns=5, k=10)
    assert stubborn.recommendations == 5 and stubborn.re_recommended == 4
    assert stubborn.turns[1]["user"].startswith("Not Titanic (1997)")


def test_a_history_that_names_the_target_is_leakage(redial_env):
    sample, item = _targets(redial_env, 1)[0]
    named = replace(sample, context=(*sample.context, Turn("user", f"I already saw {item.title}, loved it")))
    assert leaks(named, [item.title]) and not leaks(sample, [item.title])


def test_a_graph_system_converses_on_one_thread_and_never_re_offers(redial_env, real_root):
    from itertools import cycle

    from langchain_core.messages import AIMessage

    from agent.context import Context
    from sim.systems import Conversational, GraphSystem
    from tests.conftest import RecordingFake

    llm = RecordingFake(messages=cycle([AIMessage("")]), prompts=[])  # the rule manager decides; the template answers
    system = GraphSystem("wo_m", GraphConfig(data_root=str(real_root), n_demos=0, manager="rule"), Context(generate=False), model=llm)
    assert isinstance(system, Conversational)
    sample, item = _targets(redial_env, 1)[0]
    ep = simulate(system, sample, AttributeSimulator(item), turns=5, k=1)  # top-1 only: hard to succeed, many offers
    tops = [t["shown"][0] for t in ep.turns if t["shown"]]
    assert len(tops) >= 3 and len(set(tops)) == len(tops)  # the thread remembers what it offered
    (thread,) = list(system.memory.storage)  # one conversation, one thread
    said = [m.content for m in system.session_graph.get_state({"configurable": {"thread_id": thread}}).values["messages"]]
    for t in ep.turns[:-1]:  # every user reply reached the same thread, once
        assert said.count(t["user"]) == 1


def test_the_llm_simulator_speaks_from_attributes_and_never_passes_on_the_title(redial_env):
    from sim.users import LLMSimulator
    from tests.conftest import fake_llm

    sample, item = _targets(redial_env, 1)[0]
    title = item.title
    llm = fake_llm(
        "I want something tense. I think it is called " + title.upper() + "!",  # named (case aside): that sentence goes
        f"Is it {title[:-1]}? I really can't remember.",  # a misspelt title is still the title
        "Nope, not that one. I like thrillers.",
        f"{title}.",  # nothing left: the attribute simulator answers instead
    )
    user = LLMSimulator(item, llm)
    wrong = Prediction(ranked=["Titanic (1997)"], response="You might like Titanic (1997).", subtask=RECOMMENDATION)
    ask = Prediction(ranked=[], response="What kind of movie?", subtask=ELICITATION)
    replies = [user.reply(ask), user.reply(ask), user.reply(wrong), user.reply(ask)]
    assert replies[:3] == ["I want something tense.", "I really can't remember.", "Nope, not that one. I like thrillers."]
    assert replies[3] == AttributeSimulator(item).facts[0]
    assert user.masked == 3
    assert all(title not in p for p in llm.prompts) and "Titanic (1997) is not the movie you want." in llm.prompts[2]
    assert "What kind of movie?" in llm.prompts[0] and item.get("genre")[0] in llm.prompts[0]


def test_the_simulator_answers_the_attribute_it_is_asked_and_plain_rejections_tell_nothing(redial_env):
    """As in iEvaLM's attribute mode, a question about the director is answered with the director, not
    with whatever comes next; a plain rejection reveals nothing, a reasoned one the next unsaid fact."""
    item = next(i for _, i in _targets(redial_env, 40) if i.get("director") and len(i.get("genre")) >= 1 and i.get("cast"))
    user = AttributeSimulator(item)
    ask = Prediction(ranked=[], response="Do you have a favourite director, like A, B or C?", subtask=ELICITATION)
    assert user.reply(ask) == f"I like films directed by {item.get('director')[0]}."
    assert user.reply(replace(ask, response="Any actors you enjoy, for example A, B or C?")).startswith(
        f"Something with {item.get('cast')[0]}"
    )
    wrong = Prediction(ranked=["Titanic (1997)"], response="You might like Titanic (1997).", subtask=RECOMMENDATION)
    assert item.get("genre")[0] in user.reply(wrong)  # the next fact not said yet: the genre
    assert "directed by" not in " ".join(user.reply(wrong) for _ in range(4))  # the director is not said twice
    plain = AttributeSimulator(item, feedback="plain")
    assert plain.reply(wrong) == "Not Titanic (1997), I don't think that one is for me. I don't like them."
    assert plain.facts == AttributeSimulator(item).facts  # nothing was given away
    told = Prediction(ranked=[], response="Titanic (1997) was directed by James Cameron.", subtask="explanation")
    assert plain.reply(told) == NUDGE  # a statement nobody asked for earns no fact (else a manager could farm them)
    assert plain.facts == AttributeSimulator(item).facts


def test_a_rejection_names_every_item_the_user_was_shown_and_each_becomes_a_dislike(redial_env):
    """Success@k counts the top-k as shown, so the user rejects all k; the linker reads each as disliked."""
    _, item = _targets(redial_env, 1)[0]
    shown = ["Titanic (1997)", "The Shining (1980)", "Heat (1995)", "Up (2009)"]
    reply = AttributeSimulator(item, k=3).reply(Prediction(ranked=shown, response="You might like Titanic (1997).", subtask=RECOMMENDATION))
    assert reply.startswith("Not Titanic (1997), The Shining (1980), Heat (1995), I don't think any of those is for me.")
    prefs = redial_env.preferences(f"User: {reply}")
    assert set(prefs.disliked) >= set(shown[:3]) and "Up (2009)" not in prefs.items


def test_a_curious_user_asks_about_a_wrong_item_and_leaves_when_the_question_is_ignored(redial_env):
    """RLPF's training users: with ``curious=1`` every wrong recommendation first gets a follow-up; an
    answer of the right kind (explanation, detail) brings the held-back rejection, anything else ends the
    dialogue, failed; the evaluation's users (``curious=0``) never ask."""
    from sim.users import FOLLOW_UPS, LEAVES

    sample, item = _targets(redial_env, 1)[0]
    wrong = Prediction(ranked=["Titanic (1997)"], response="You might like Titanic (1997).", subtask=RECOMMENDATION)
    outcomes = {}
    for seed in range(12):
        user = AttributeSimulator(item, feedback="plain", curious=1.0, seed=seed)
        question = user.reply(wrong)
        expected = dict(FOLLOW_UPS)[question]
        answered = user.reply(Prediction(ranked=[], response="Because you liked Heat (1995).", subtask=expected))
        assert answered.startswith("Not Titanic (1997)") and not user.left
        assert user.reply(wrong) in dict(FOLLOW_UPS)  # the next wrong item gets its question too
        assert user.reply(wrong) == LEAVES and user.left  # ... and another recommendation instead of the answer ends it
        outcomes[expected] = outcomes.get(expected, 0) + 1
    assert set(outcomes) == {"explanation", "item detail search"}  # both kinds are asked
    assert AttributeSimulator(item, feedback="plain").reply(wrong).startswith("Not Titanic (1997)")  # never curious by default

    class _Stubborn:  # a system that keeps recommending the same wrong item
        name = "stubborn"

        def predict(self, s):
            return wrong

    ep = simulate(_Stubborn(), sample, AttributeSimulator(item, feedback="plain", curious=1.0), turns=5, k=10)
    assert len(ep.turns) == 2 and ep.turns[-1]["user"] == LEAVES and ep.success_turn is None


def test_a_names_free_user_states_genres_decades_and_films_like_the_target_never_a_person(redial_env):
    """``facts=("genre", "decade", "title")``: a user who knows no names says genres, the decade and films
    it enjoyed that are like the target (most shared genres, same decade), never the target's film nor a
    person, even when asked about the cast."""
    from sim.users import similar_titles

    for _, item in _targets(redial_env, 30):
        similar = similar_titles(redial_env, item)
        user = AttributeSimulator(item, facts=("genre", "decade", "title"), similar=similar)
        assert similar and all(redial_env.film_key.get(s, s) != redial_env.film_key.get(item.name, item.name) for s in similar)
        assert all(redial_env.genres_of(s) & set(item.get("genre")) for s in similar)
        said = " ".join(user.facts)
        people = [p for key in ("cast", "director", "writer") for p in item.get(key)]
        assert not any(mentions(said, p) for p in people)
        assert item.get("genre")[0] in said and f"I really enjoyed {similar[0]}." in said
        ask = Prediction(ranked=[], response="Any actors you enjoy, for example A, B or C?", subtask=ELICITATION)
        assert not any(mentions(user.reply(ask), p) for p in people)
