"""``python -m eval simulate``: interactive evaluation with a simulated user (iEvaLM-CRS's protocol).

For each test turn with target items, the real dialogue up to that turn is the history; the system
answers it, and while no target is among the top-k items it shows, a simulated user who knows the
target's attributes from the catalog (never its title) answers for up to ``turns`` turns:

* a question about an attribute (genre, cast, director, writer, decade: found in the question's
  words, e.g. "Any actors you enjoy?") gets the target's values of that attribute, as iEvaLM's
  attribute mode answers; any other question gets the next attribute not said yet (genre, cast,
  director, writer, in that order); a turn that neither recommends nor asks (an explanation nobody
  asked for) gets no fact, only "What would you recommend?";
* a wrong recommendation is rejected: the user saw the top-k (success@k counts them all), so the
  rejection names every one of them ("Not X, Y, Z, ..."), together with the next attribute not said yet
  (``--feedback reason``, the default), or with no reason at all (``--feedback plain``: iEvaLM's
  "I don't like them."), so that only a system that asks learns more than the opening.

The dialogue stops at the first turn whose shown top-k holds a target (success at that turn). The
graph systems talk on one thread per dialogue (:class:`eval.systems.Conversational`): they get the
history once, then each user reply, and keep their state between turns as they do in the chat and
the server; a stateless system (an expert alone) reads the dialogue so far on every turn.
Dialogues whose history already names a target are dropped (the leakage that inflates iEvaLM's
figures) and counted in the report.

Metrics per system, over the same dialogues: success@k within the turns (95% bootstrap CI, one-sided
paired t and Wilcoxon tests against the first system, Holm-corrected), mean turns to success, the
share of the system's questions that repeat an earlier question of the same dialogue verbatim, and
the share of recommendations whose named item (the top one) was already offered or rejected.
Transcripts go to ``<results>/simulate/<dataset>/<system>.jsonl``, tables to ``tables.md``.

A *curious* attribute user (``curious`` > 0; RLPF's training users, never the evaluation's) sometimes
asks about a wrong recommendation before rejecting it ("Why would I like that?", "Who made it?") and
leaves, the dialogue failed, when the next turn does not answer (an explanation, a detail): a user
whose question is ignored does not stay, so a policy learned from these users keeps answering them.

Two simulators share the :class:`UserSimulator` interface: the deterministic attribute one (the
default) and :class:`LLMSimulator` (``--simulator llm --simulator_model SPEC``: any chat model plays
the user from ``prompts/simulator.txt``; its sentences that name the target, even fuzzily, are
removed and counted).
"""

from __future__ import annotations

import json
import random
import re
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from rapidfuzz import fuzz

import prompts
from agent.llm import LocalHFChatModel
from agent.nodes import sentences
from crsdata.catalog import Item
from crsdata.loaders import load_samples
from crsdata.metrics import bootstrap_ci, compare_paired, holm
from crsdata.schema import RecSample, Turn
from eval.systems import Conversational, Prediction, System
from tools.subtasks import DETAIL_SEARCH, EXPLANATION, RECOMMENDATION

TITLE_FUZZ = 85  # rapidfuzz partial ratio from which a sentence names the title
FACTS = (("genre", "I'm in the mood for a {} movie.", 2), ("cast", "Something with {} in it would be great.", 2),
         ("director", "I like films directed by {}.", 1), ("writer", "Maybe something written by {}?", 1),
         ("decade", "Something from the {} would be nice.", 1))  # fmt: skip
#: Words of a question that ask about an attribute (the earliest found in the question wins).
ASKS = {"genre": r"genres?|kind of", "cast": r"actors?|actress(?:es)?|cast|stars?", "director": r"directors?|directed",
        "writer": r"writers?|authors?|written", "decade": r"decades?|era|particular time|how old|\d{4}s"}  # fmt: skip
REJECTION = "I don't like them."
#: What a curious user asks about a recommended item, and the sub-task that answers it. Worded unlike the
#: scripted conversations of the tests, which check the manager on phrasings it never trained on.
FOLLOW_UPS = (("Why would I like that?", EXPLANATION), ("How is that one like what I told you?", EXPLANATION),
              ("Hmm, and who made it?", DETAIL_SEARCH), ("Who are the actors in it?", DETAIL_SEARCH))  # fmt: skip
LEAVES = "You did not answer my question. Bye."
#: The reply to a statement that neither recommends nor asks (an explanation or a detail nobody asked
#: for): the user learns nothing and says nothing new, so only a question earns an attribute.
NUDGE = "OK. What would you recommend?"


@dataclass
class SimulateArguments:
    """``python -m eval simulate``: a simulated user talks with each system."""

    dataset: str = field(default="redial", metadata={"help": "redial, opendialkg, inspired"})
    split: str = field(default="test")
    dialogues: int = field(default=200, metadata={"help": "test turns with targets (seeded sample) to start from; 0: every one"})
    turns: int = field(default=5, metadata={"help": "system turns per simulated dialogue"})
    k: int = field(default=10, metadata={"help": "success when a target is in the top-k the system shows"})
    systems: str = field(default="full,wo_m", metadata={"help": "comma list, as python -m eval run; the first is compared with the rest"})
    seed: int = field(default=0)
    results_dir: str = field(default="results")
    data_root: str | None = field(default=None)
    manager: str = field(default="trained", metadata={"help": "who decides in the graph systems: trained, prompt or rule"})
    simulator: str = field(default="attribute", metadata={"help": "attribute (deterministic) or llm (a chat model plays the user)"})
    simulator_model: str | None = field(default=None, metadata={"help": "model spec of the llm simulator (default: the embedded model)"})
    feedback: str = field(default="reason", metadata={"help": "a rejection gives a reason (reason) or not (plain, as iEvaLM)"})


def _mentions(text: str, title: str) -> bool:
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
    """

    def __init__(self, target: Item, feedback: str = "reason", k: int = 10, curious: float = 0.0, seed: int = 0) -> None:
        if feedback not in ("reason", "plain"):
            raise ValueError(f"unknown feedback {feedback!r}; use 'reason' or 'plain'")
        self.target, self.feedback, self.k, self.masked, self.left = target, feedback, k, 0, False
        self.curious, self.rng = curious, random.Random(seed)
        self.expects: tuple[str, str] | None = None  # the sub-task that answers the user's question, and the rejection it holds back
        names = {target.name, target.title}
        self.known = {key: [template.format(v) for v in _values(target, key)[:n]
                            if not any(_mentions(v, t) or _mentions(t, v) for t in names)] for key, template, n in FACTS}  # fmt: skip
        self.said = {key: list(v) for key, v in self.known.items()}  # what it has not said yet

    @property
    def facts(self) -> list[str]:
        """What the user can still say, in the order it volunteers it."""
        return [f for key, *_ in FACTS for f in self.said[key]]

    def _next_fact(self) -> str:
        for key, *_ in FACTS:
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
        if key is not None:
            self.said[key] = []
            return " ".join(self.known[key]) or f"I don't mind the {key}, really."
        return self._next_fact()


def _names_title(sentence: str, title: str) -> bool:
    """Does ``sentence`` name ``title``, fuzzily (a misspelt or partial title counts; titles under 5
    characters must appear as a word, else "It" would match every sentence)?"""
    if len(title) < 5:
        return _mentions(sentence, title)
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


@dataclass
class Episode:
    """One simulated dialogue with one system."""

    sample_id: str
    targets: list[str]
    success_turn: int | None = None
    turns: list[dict[str, Any]] = field(default_factory=list)
    repeated_questions: int = 0
    questions: int = 0
    re_recommended: int = 0
    recommendations: int = 0
    masked_replies: int = 0


def simulate(system: System, sample: RecSample, user: UserSimulator, turns: int, k: int) -> Episode:
    """Let ``user`` talk with ``system`` from ``sample``'s history for up to ``turns`` system turns."""
    ep = Episode(sample.sample_id, list(sample.targets))
    context = list(sample.context)
    asked: set[str] = set()
    offered = {i for t in context for i in t.items}  # named in the history: not a new recommendation
    session = system.session(sample) if isinstance(system, Conversational) else None
    for turn in range(1, turns + 1):
        if session is not None:  # one thread: the system keeps its state from turn to turn
            pred = session(ep.turns[-1]["user"] if ep.turns else None)
        else:  # stateless: the system reads the dialogue so far
            pred = system.predict(replace(sample, context=tuple(context)))
        shown = pred.ranked[:k] if pred.subtask == RECOMMENDATION else []
        if shown:
            ep.recommendations += 1
            ep.re_recommended += shown[0] in offered
            offered.add(shown[0])
        else:
            ep.questions += 1
            ep.repeated_questions += pred.response in asked
            asked.add(pred.response)
        hit = any(t in shown for t in sample.targets)
        record: dict[str, Any] = {
            "turn": turn,
            "subtask": pred.subtask,
            "expert": pred.expert,
            "response": pred.response,
            "shown": shown[:3],
        }
        if hit:
            ep.success_turn = turn
            ep.turns.append(record)
            break
        record["user"] = user.reply(pred)
        ep.turns.append(record)
        if user.left:
            break
        context += [Turn("recommender", pred.response, tuple(shown[:1])), Turn("user", record["user"])]
    ep.masked_replies = user.masked
    return ep


def leaks(sample: RecSample, titles: list[str]) -> bool:
    """Does the history already name a target (the iEvaLM leakage)?"""
    text = " ".join(t.text for t in sample.context)
    return any(_mentions(text, t) for t in titles) or any(i in sample.targets for t in sample.context for i in t.items)


def choose_dialogues(
    env: Any, dataset: str, split: str, n: int, seed: int, data_root: str | None = None
) -> tuple[list[tuple[RecSample, Item]], int]:
    """A seeded sample of ``n`` turns (all when ``n`` is 0) with a catalog target whose history does not
    name a target, each with its (first) target item; and how many were dropped for that leakage."""
    samples = [s for s in load_samples(dataset, split, data_root) if s.targets]
    random.Random(seed).shuffle(samples)
    chosen: list[tuple[RecSample, Item]] = []
    dropped = 0
    for s in samples:
        items = [env.catalog.get(dataset, t) for t in s.targets]
        if items[0] is None:
            continue
        if leaks(s, [i.title for i in items if i is not None]):
            dropped += 1
            continue
        chosen.append((s, items[0]))
        if n and len(chosen) == n:
            break
    return chosen, dropped


def _ci(values: list[float]) -> str:
    lo, hi = bootstrap_ci(values)
    return f"{sum(values) / max(1, len(values)):.4f} [{lo:.4f}, {hi:.4f}]"


def run(args: SimulateArguments, progress: bool = True) -> Path:
    """Simulate every system on the same dialogues; write transcripts and ``tables.md``; return the tables."""
    from tqdm import tqdm

    from agent.llm import load_chat_model
    from eval.harness import RunConfig, make_system
    from tools.env import expert_env

    if args.simulator not in ("attribute", "llm"):
        raise ValueError(f"unknown simulator {args.simulator!r}; use 'attribute' or 'llm'")
    env = expert_env(args.dataset, args.data_root)
    talker = load_chat_model(args.simulator_model) if args.simulator == "llm" else None

    def user_for(item: Item) -> UserSimulator:
        return LLMSimulator(item, talker, env.category) if talker is not None else AttributeSimulator(item, args.feedback, args.k)

    chosen, dropped = choose_dialogues(env, args.dataset, args.split, args.dialogues, args.seed, args.data_root)
    cfg = RunConfig(dataset=args.dataset, split=args.split, data_root=args.data_root, manager=args.manager, metrics="rec", seed=args.seed)
    names = [n.strip() for n in args.systems.split(",") if n.strip()]
    out = (
        Path(args.results_dir) / "simulate" / args.dataset / ("llm" if talker is not None else "plain" if args.feedback == "plain" else "")
    )
    out.mkdir(parents=True, exist_ok=True)
    shared: dict[str, Any] = {}
    episodes: dict[str, list[Episode]] = {}
    seconds: dict[str, float] = {}
    for name in names:
        system = make_system(name, cfg, shared)
        start = time.perf_counter()
        eps = [simulate(system, s, user_for(item), args.turns, args.k) for s, item in tqdm(chosen, desc=name, disable=not progress)]
        seconds[name] = time.perf_counter() - start
        episodes[name] = eps
        with (out / f"{name.replace(':', '__')}.jsonl").open("w", encoding="utf-8") as fh:
            for ep in eps:
                fh.write(json.dumps(ep.__dict__) + "\n")
    return write_tables(out, args, episodes, seconds, len(chosen), dropped)


def _simulator_line(args: SimulateArguments) -> str:
    if args.simulator == "llm":
        return f"LLM simulator ({args.simulator_model or 'the embedded model'}, prompts/simulator.txt, seed {args.seed})"
    return f"Attribute simulator (seed {args.seed}, rejections {'with a reason' if args.feedback == 'reason' else 'without a reason'})"


def write_tables(
    out: Path, args: SimulateArguments, episodes: dict[str, list[Episode]], seconds: dict[str, float], n: int, dropped: int
) -> Path:
    """The report: success, turns, repeats and re-recommendations per system, and paired tests."""
    names = list(episodes)
    success = {name: [float(e.success_turn is not None) for e in eps] for name, eps in episodes.items()}
    lines = [f"# Simulated users on {args.dataset}/{args.split}: {n} dialogues, up to {args.turns} turns, success@{args.k}", "",
             f"{_simulator_line(args)}; {dropped} dialogues were skipped because their history already named a target; "
             f"replies from which the target's title was removed: {sum(e.masked_replies for eps in episodes.values() for e in eps)}.", "",
             f"| system | success@{args.k} [95% CI] | mean turns to success | repeated questions | re-recommended items | recommends on | minutes |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, eps in episodes.items():
        won = [e.success_turn for e in eps if e.success_turn is not None]
        q, rq = sum(e.questions for e in eps), sum(e.repeated_questions for e in eps)
        r, rr = sum(e.recommendations for e in eps), sum(e.re_recommended for e in eps)
        lines.append(
            f"| {name} | {_ci(success[name])} | {sum(won) / len(won) if won else float('nan'):.2f} | {rq} of {q} | {rr} of {r} | "
            f"{r / max(1, q + r):.2f} of turns | {seconds.get(name, 0) / 60:.1f} |"
        )
    if len(names) > 1:
        main = names[0]
        comps = [(b, compare_paired(success[main], success[b])) for b in names[1:]]
        lines += ["", f"{main} against each system (one-sided, a > b; Holm over {len(comps)}):", "",
                  "| system | mean diff [95% CI] | t-test p | Holm p | Wilcoxon p |", "|---|---|---|---|---|"]  # fmt: skip
        for (b, c), p in zip(comps, holm([c.ttest_p for _, c in comps]), strict=True):
            lines.append(f"| {b} | {c.table_cells(p)} |")
    first = episodes[names[0]][0] if names and episodes[names[0]] else None
    if first is not None:
        lines += ["", f"One transcript ({names[0]}, {first.sample_id}, targets {first.targets}):", ""]
        for t in first.turns:
            lines.append(f"- system ({t['subtask']}): {t['response']}" + (f"\n- user: {t['user']}" if "user" in t else ""))
    md = out / "tables.md"
    md.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return md


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(SimulateArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    md = run(args)
    print(md.read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
