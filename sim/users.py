"""Simulated users (iEvaLM-CRS's protocol): they want a target item and answer a system's turn from
its catalog attributes, never its title.

* :class:`AttributeSimulator` (deterministic): a question about an attribute (genre, cast, director,
  writer, decade: found in the question's words) gets the target's values of it; any other question
  gets the next attribute not said yet; a wrong recommendation is rejected, naming every item shown,
  with the next attribute (``feedback="reason"``) or without (``"plain"``: iEvaLM's "I don't like them.").
  A *curious* user (RLPF's training users, never the evaluation's) sometimes asks about a wrong
  recommendation first and leaves when the next turn does not answer.
* :class:`LLMSimulator`: any chat model plays the user from ``prompts/simulator.txt``; its sentences
  that name the target, even fuzzily, are removed and counted.
"""

from __future__ import annotations

import random
import re
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from rapidfuzz import fuzz

import prompts
from agent.llm import LocalHFChatModel
from agent.text import sentences
from crsdata.catalog import Item
from sim.systems import Prediction
from tools.subtasks import DETAIL_SEARCH, EXPLANATION, RECOMMENDATION

TITLE_FUZZ = 85  # rapidfuzz partial ratio from which a sentence names the title
FACTS = (("genre", "I'm in the mood for a {} movie.", 2), ("cast", "Something with {} in it would be great.", 2),
         ("director", "I like films directed by {}.", 1), ("writer", "Maybe something written by {}?", 1),
         ("decade", "Something from the {} would be nice.", 1))  # fmt: skip
#: Words of a question that ask about an attribute (the earliest found in the question wins).
ASKS = {"genre": r"genres?|kind of", "cast": r"actors?|actress(?:es)?|cast|stars?", "director": r"directors?|directed",
        "writer": r"writers?|authors?|written", "decade": r"decades?|era|particular time|how old|\d{4}s"}  # fmt: skip
#: A user who states no names (``facts="genre,decade,title"``) also names films like the target it
#: enjoyed (:func:`similar_titles`), the way a person describes a taste without knowing who made what.
TITLE_FACT = ("title", "I really enjoyed {}.", 2)
#: Every attribute a user may state, in the order it volunteers them.
ALL_FACTS = (*(key for key, *_ in FACTS), "title")
REJECTION = "I don't like them."
#: What a curious user asks about a recommended item, and the sub-task that answers it. Worded unlike the
#: scripted conversations of the tests, which check the manager on phrasings it never trained on.
FOLLOW_UPS = (("Why would I like that?", EXPLANATION), ("How is that one like what I told you?", EXPLANATION),
              ("Hmm, and who made it?", DETAIL_SEARCH), ("Who are the actors in it?", DETAIL_SEARCH))  # fmt: skip
LEAVES = "You did not answer my question. Bye."
#: The reply to a statement that neither recommends nor asks (an explanation or a detail nobody asked
#: for): the user learns nothing and says nothing new, so only a question earns an attribute.
NUDGE = "OK. What would you recommend?"


def mentions(text: str, title: str) -> bool:
    """Does ``text`` name ``title`` (whole words; case matters for titles under 5 characters, e.g. "It")?"""
    if not title:
        return False
    flags = re.IGNORECASE if len(title) >= 5 else 0
    return re.search(rf"(?<!\w){re.escape(title)}(?!\w)", text, flags) is not None


class UserSimulator(Protocol):
    """A simulated user who wants ``target`` and answers a system's turn; ``masked`` counts the replies
    from which a naming of the target had to be removed."""

    masked: int
    left: bool  # the user walked away: the dialogue ends, failed

    def reply(self, prediction: Prediction) -> str:
        """The user's next utterance after the system's turn."""
        ...


def asked_attribute(question: str) -> str | None:
    """The attribute a system's question asks about, by its words (the earliest mention wins).

    >>> asked_attribute("Do you have a favourite director, like A, B or C?")
    'director'
    >>> asked_attribute("Which genre are you in the mood for: drama or a film with great actors?")
    'genre'
    >>> asked_attribute("Tell me about a movie you loved.") is None
    True
    """
    found = [(m.start(), key) for key, words in ASKS.items() if (m := re.search(rf"\b(?:{words})\b", question, re.IGNORECASE))]
    return min(found)[1] if found else None


def similar_titles(env: Any, target: Item, n: int = 2) -> list[str]:
    """The ``n`` most mentioned catalog items most like ``target`` (most shared genres, then the same
    decade), never an entry of its film nor a title that contains its own: the titles a names-free user
    says it enjoyed."""
    genres, decade = set(target.get("genre")), (target.year // 10 if target.year else None)
    key = env.film_key.get(target.name, target.name)

    def likeness(name: str) -> tuple[int, int]:
        year = env.year_of.get(name)
        return len(genres & env.genres_of(name)), int(decade is not None and year is not None and year // 10 == decade)

    pool = [i for i in env.ranked_by_popularity[:2000]
            if env.film_key.get(i, i) != key and likeness(i)[0] and not mentions(i, target.title)]  # not a sequel: it names the target  # fmt: skip
    return sorted(pool, key=lambda i: tuple(-x for x in likeness(i)))[:n]


def _values(target: Item, key: str) -> list[str]:
    if key == "decade":
        return [f"{target.year // 10 * 10}s"] if target.year else []
    return target.get(key)


class AttributeSimulator:
    """Deterministic: answers the attribute a question asks, and rejects wrong items (see the module
    docstring); its replies are built from the target's attributes, never its title.

    Args:
        target: The catalog item the user wants (its title is never said).
        feedback: ``reason`` (a rejection says the next attribute not said yet) or ``plain`` (it says
            only "I don't like them.").
        k: How many of a recommendation's items the user sees, and so rejects.
        curious: The chance that a wrong recommendation gets a follow-up question first (:data:`FOLLOW_UPS`);
            the user leaves when the next turn does not answer it. 0 (no questions) in evaluation.
        seed: Seeds which recommendations get a question, and which one.
        facts: The attributes the user states (:data:`ALL_FACTS` but ``title`` by default); ``genre,decade,title``
            is a user who names no person, only genres, decades and films it enjoyed.
        similar: The films it says it enjoyed (``title`` facts; :func:`similar_titles`).
    """

    def __init__(self, target: Item, feedback: str = "reason", k: int = 10, curious: float = 0.0, seed: int = 0,
                 facts: tuple[str, ...] = ALL_FACTS[:-1], similar: list[str] | None = None) -> None:  # fmt: skip
        if feedback not in ("reason", "plain"):
            raise ValueError(f"unknown feedback {feedback!r}; use 'reason' or 'plain'")
        if unknown := set(facts) - set(ALL_FACTS):
            raise ValueError(f"unknown facts {sorted(unknown)}; choose from {', '.join(ALL_FACTS)}")
        self.target, self.feedback, self.k, self.masked, self.left = target, feedback, k, 0, False
        self.curious, self.rng = curious, random.Random(seed)
        self.expects: tuple[str, str] | None = None  # the sub-task that answers the user's question, and the rejection it holds back
        names = {target.name, target.title}
        self.order = [key for key in ALL_FACTS if key in facts]
        values = {key: _values(target, key) for key in self.order if key != "title"} | {"title": list(similar or [])}
        templates = {key: (template, n) for key, template, n in (*FACTS, TITLE_FACT)}
        self.known = {key: [templates[key][0].format(v) for v in values[key][: templates[key][1]]
                            if not any(mentions(v, t) or mentions(t, v) for t in names)] for key in self.order}  # fmt: skip
        self.said = {key: list(v) for key, v in self.known.items()}  # what it has not said yet

    @property
    def facts(self) -> list[str]:
        """What the user can still say, in the order it volunteers it."""
        return [f for key in self.order for f in self.said[key]]

    def _next_fact(self) -> str:
        for key in self.order:
            if self.said[key]:
                return self.said[key].pop(0)
        return "Anything else along those lines?"

    def reply(self, prediction: Prediction) -> str:
        """Reject a wrong recommendation (with a reason, by default; a curious user may ask about it
        first); answer a question."""
        if self.expects is not None:  # the user asked about the last recommendation
            (expected, rejection), self.expects = self.expects, None
            if prediction.subtask != expected:
                self.left = True
                return LEAVES
            return rejection
        if prediction.subtask == RECOMMENDATION and prediction.ranked:
            reason = self._next_fact() if self.feedback == "reason" else REJECTION
            shown = prediction.ranked[: self.k]
            rejection = f"Not {', '.join(shown)}, I don't think {'that one is' if len(shown) == 1 else 'any of those is'} for me. {reason}"
            if self.curious and self.rng.random() < self.curious:
                question, expected = self.rng.choice(FOLLOW_UPS)
                self.expects = (expected, rejection)
                return question
            return rejection
        if "?" not in prediction.response:
            return NUDGE
        key = asked_attribute(prediction.response)
        if key is not None and key in self.said:
            self.said[key] = []
            return " ".join(self.known[key]) or f"I don't mind the {key}, really."
        return self._next_fact()


def _names_title(sentence: str, title: str) -> bool:
    """Does ``sentence`` name ``title``, fuzzily (a misspelt or partial title counts; titles under 5
    characters must appear as a word, else "It" would match every sentence)?"""
    if len(title) < 5:
        return mentions(sentence, title)
    return fuzz.partial_ratio(title.lower(), sentence.lower()) >= TITLE_FUZZ


class LLMSimulator:
    """An LLM plays the user (iEvaLM's free-form mode) from the target's catalog attributes and the
    system's last turn (prompt ``prompts/simulator.txt``). Its sentences that name the target, even
    fuzzily, are removed; when nothing is left the attribute simulator's reply is used, and
    :attr:`masked` counts both.

    Args:
        target: The catalog item the user wants.
        model: Any chat model (the embedded default, a local HF folder, an OpenAI-compatible endpoint).
        category: What the items are ("movie").
        max_new_tokens: Budget of a reply on a local model.
    """

    def __init__(self, target: Item, model: BaseChatModel, category: str = "movie", max_new_tokens: int = 40) -> None:
        self.target, self.model, self.category, self.max_new_tokens = target, model, category, max_new_tokens
        self.fallback = AttributeSimulator(target)
        self.known = "\n".join(f"- {key}: {', '.join(target.get(key)[:n])}" for key, _, n in FACTS if target.get(key))
        self.masked, self.left = 0, False

    def reply(self, prediction: Prediction) -> str:
        """The LLM's reply, without any sentence that names the target."""
        wrong = prediction.subtask == RECOMMENDATION and prediction.ranked
        prompt = prompts.render("simulator", {
            "Category": self.category,
            "Target Attributes": self.known or "- nothing specific",
            "System Turn": prediction.response,
            "Feedback": f"{prediction.ranked[0]} is not the {self.category} you want." if wrong else "",
        })  # fmt: skip
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "stop": ["\n"]} if isinstance(self.model, LocalHFChatModel) else {}
        text = " ".join(str(self.model.invoke([HumanMessage(prompt)], **kwargs).content).split())
        said = sentences(text)
        kept = [x for x in said if not any(_names_title(x, t) for t in {self.target.title, self.target.name})]
        if len(kept) < len(said) or not kept:
            self.masked += 1
        return " ".join(kept) if kept else self.fallback.reply(prediction)
