"""``python -m eval wishes``: does the recommendation meet what the user asked for?

Requests are generated from the dataset's catalog (seeded): a value is asked for only when at least
:data:`MIN_ITEMS` items have it, so every request can be met. Each goes to every system through its
own conversation (the graph systems on a thread with a checkpointer; an expert alone reads the
dialogue so far, with its own earlier answers in it), and the top item and the top ten are checked
against the catalog:

* single turn: a genre; a decade; a genre and a decade; recency words ("something recent", "maybe a
  classic?"); an actor; a director; a writer (where the catalog has writers and the kind is asked
  for); a liked item plus a genre; a liked item plus a disliked genre;
* three-turn refinement: a liked item, then a genre ("I'd prefer a comedy this time."), then a decade,
  then "actually, something newer": each later turn is checked against everything asked so far.

An item meets a request when it has the asked genre, person or years (the checks below, written from
the catalog, not from :mod:`tools.preferences`), and is no film the user named (any of its catalog
entries). Top-1 is whether the first item meets it (0 when the system recommends nothing); top-10 is
the share of the first ten that do. 95% bootstrap CIs; the first system against each other one,
paired one-sided t-tests, Holm-corrected.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.config import GraphConfig
from crsdata.metrics import bootstrap_ci, compare_paired, holm
from crsdata.publish import PUBLISH_HELP, command_line, publish
from crsdata.schema import RecSample, Turn
from sim.systems import Conversational, Prediction, System
from tools.env import ExpertEnv
from tools.subtasks import RECOMMENDATION

MIN_ITEMS = 10
#: "Recent" is met by the catalog's last ten years; "a classic" by anything before 1980.
RECENT_SPAN, CLASSIC_BEFORE = 10, 1980
DECADE_WORDS = {1970: "seventies", 1980: "eighties", 1990: "nineties"}


@dataclass
class WishesArguments(GraphConfig):
    """What ``python -m eval wishes`` parses (the graph's options are :class:`GraphConfig`'s)."""

    systems: list[str] = field(default_factory=lambda: ["full", "wo_m"], metadata={"help": "comma list; expert:all adds every recommender"})
    per_kind: int = field(default=100, metadata={"help": "requests (or conversations) per kind"})
    phrasings: str = field(default="standard", metadata={"help": "standard, or heldout (written after the parser, never tuned on)"})
    results_dir: Path = Path("results")
    publish: bool = field(default=True, metadata={"help": PUBLISH_HELP})

    def __post_init__(self) -> None:
        super().__post_init__()
        self.systems = [n.strip() for entry in self.systems for n in entry.split(",") if n.strip()]
        self.results_dir = Path(self.results_dir)


Check = Callable[[str], bool]


@dataclass
class Request:
    """One generated conversation: the user's turns, and for each turn the check of its top item
    (``None``: that turn is not scored, e.g. "I loved Heat (1995).")."""

    kind: str
    turns: list[str]
    checks: list[Check | None]
    labels: list[str]


# ---- the catalog's checks ----------------------------------------------------------------------------


def has(env: ExpertEnv, key: str, value: str) -> Check:
    """An item whose catalog attribute ``key`` has ``value``."""
    return lambda item: value in env.item_attributes.get(item, {}).get(key, set())


def years(env: ExpertEnv, lo: int | None, hi: int | None) -> Check:
    """An item from ``lo`` to ``hi`` (inclusive; ``None`` open)."""

    def check(item: str) -> bool:
        y = env.year_of.get(item)
        return y is not None and (lo is None or y >= lo) and (hi is None or y <= hi)

    return check


def without_genre(env: ExpertEnv, genre: str) -> Check:
    """An item not of ``genre``."""
    return lambda item: genre not in env.genres_of(item)


def both(*checks: Check) -> Check:
    """An item that passes every check."""
    return lambda item: all(c(item) for c in checks)


# ---- generating requests -------------------------------------------------------------------------------


def _values(env: ExpertEnv, key: str, pool: set[str] | None = None) -> list[str]:
    """Values of ``key`` that at least :data:`MIN_ITEMS` items (of ``pool``) have, most common first."""
    counts: dict[str, int] = {}
    for item, attrs in env.item_attributes.items():
        if pool is None or item in pool:
            for v in attrs.get(key, ()):
                counts[v] = counts.get(v, 0) + 1
    return sorted((v for v, n in counts.items() if n >= MIN_ITEMS), key=lambda v: (-counts[v], v))


def _decades(env: ExpertEnv) -> list[int]:
    counts: dict[int, int] = {}
    for y in env.year_of.values():
        if y and y >= 1950:
            counts[y // 10 * 10] = counts.get(y // 10 * 10, 0) + 1
    return sorted(d for d, n in counts.items() if n >= MIN_ITEMS)


def _decade_said(rng: random.Random, decade: int) -> str:
    forms = [f"the {decade}s", f"the {str(decade)[2:]}s"] + ([f"the {DECADE_WORDS[decade]}"] if decade in DECADE_WORDS else [])
    return rng.choice(forms)


#: How users say each kind of request (``{g}`` genre, ``{c}`` category, ``{d}`` decade as said, ``{p}``
#: person, ``{x}`` a liked item). ``standard`` is what the preference state was built against; ``heldout``
#: was written afterwards and never tuned on: its figures say how the parser generalises.
PHRASINGS: dict[str, dict[str, list[str]]] = {
    "standard": {
        "genre": ["I'm in the mood for a {g} {c}.", "Any good {g} {c}s?", "Can you recommend a {g} {c}?", "I want to see a {g} {c} tonight."],
        "decade": ["I'm in the mood for something from {d}.", "Any {c}s from {d}?", "Recommend me something from {d}, please."],
        "genre + decade": ["Any {g} {c}s from {d}?", "I'd like a {g} {c} from {d}.", "Something {g} from {d} please."],
        "recent": ["Something recent, please.", "Any good new {c}s from the last few years?", "What's a recent {c} worth seeing?",
                   "I want something modern."],
        "classic": ["Not sure what I want. Maybe a classic?", "I'd love an old classic {c}.", "Something older, a real classic."],
        "actor": ["Something with {p} in it would be great.", "Any {c}s starring {p}?", "I really like {p}. What should I watch?"],
        "director": ["I like films directed by {p}.", "Anything directed by {p}?", "Do you know any {c}s by {p}?"],
        "writer": ["Any {c}s written by {p}?", "I like {p}'s writing. Anything by them?"],
        "liked item + genre": ["I loved {x}. Something like it but a {g}?", "I liked {x}, but I'd prefer a {g} {c} now.",
                               "{x} was great. Any {g} {c}s like it?"],
        "liked item + disliked genre": ["I loved {x}, but no {g} please.", "I liked {x}. Something like it but not {g}.",
                                        "{x} was good. I don't want {g} this time though."],
        "turn 1": ["I loved {x}.", "My favorite {c} is {x}."],
        "turn 2": ["I'd prefer a {g} this time.", "Hmm, how about a {g} {c}?", "Actually I want a {g}."],
        "turn 3": ["Something from {d}?", "Maybe one from {d}."],
        "turn 4": ["Actually, something newer.", "Hmm, something more recent please."],
    },
    "heldout": {
        "genre": ["Got a good {g} {c} for me?", "I'm really into {g} {c}s.", "Could I get a {g} recommendation?", "{g} {c}s are my favourite."],
        "decade": ["Show me {c}s made in {d}.", "I'd enjoy something from {d}.", "{c}s from {d} are my thing."],
        "genre + decade": ["I'd enjoy a {g} from {d}.", "Looking for a {g} {c}, ideally from {d}.", "I like {g} {c}s from {d}."],
        "recent": ["Anything that came out lately?", "I'd like a {c} from the last couple of years.", "Show me something new."],
        "classic": ["Give me something vintage.", "I'm in the mood for an old {c}.", "Any good oldies?"],
        "actor": ["I'm a big fan of {p}.", "Any {c} featuring {p}?", "What has {p} starred in that I'd like?"],
        "director": ["Any {c} directed by {p}?", "Something from director {p}?", "Show me {c}s by {p}."],
        "writer": ["Anything written by {p}?", "Got any {c}s by the writer {p}?"],
        "liked item + genre": ["{x} is one of my favourites, but I'm after a {g} now.", "I enjoyed {x}. Could you suggest a {g}?"],
        "liked item + disliked genre": ["I enjoyed {x}. Please, nothing {g}.", "{x} was fine, but I'm not into {g}."],
        "turn 1": ["I really enjoyed {x}.", "{x} is great."],
        "turn 2": ["Let's switch to a {g}.", "Could we try a {g} instead?"],
        "turn 3": ["From {d}, if possible.", "Ideally something from {d}."],
        "turn 4": ["Can it be more recent?", "Something a bit newer?"],
    },
}  # fmt: skip


def generate(env: ExpertEnv, per_kind: int, seed: int = 0, phrasings: str = "standard") -> list[Request]:
    """Requests of every kind from ``env``'s catalog, said as :data:`PHRASINGS` ``[phrasings]`` says
    (deterministic in ``seed``)."""
    if phrasings not in PHRASINGS:
        raise ValueError(f"unknown phrasings {phrasings!r}; choose from {', '.join(PHRASINGS)}")
    forms = PHRASINGS[phrasings]
    rng = random.Random(seed)
    cat = env.category
    genres = [g for g in _values(env, "genre") if len(g) > 2][:20]
    actors = _values(env, "cast")[:300]
    directors = _values(env, "director")[:200] or sorted(env.items_by_person, key=lambda p: -len(env.items_by_person[p]))[:50]
    writers = _values(env, "writer")[:200]
    decades = _decades(env)
    popular = [i for i in env.ranked_by_popularity[:300] if env.genres_of(i)]
    newest = env.newest_year
    out: list[Request] = []

    def say(kind: str, **values: str) -> str:
        text = rng.choice(forms[kind]).format(c=cat, **values)
        return text[:1].upper() + text[1:]

    def add(kind: str, turns: list[str], checks: list[Check | None], labels: list[str]) -> None:
        out.append(Request(kind, turns, checks, labels))

    for _ in range(per_kind):
        g = rng.choice(genres)
        add("genre", [say("genre", g=g.lower())], [has(env, "genre", g)], [g])
    for _ in range(per_kind):
        d = rng.choice(decades)
        add("decade", [say("decade", d=_decade_said(rng, d))], [years(env, d, d + 9)], [f"{d}s"])
    pairs = [
        (g, d)
        for g in genres
        for d in decades
        if sum(1 for i in env.items_by_genre.get(g, ()) if (y := env.year_of.get(i)) and d <= y <= d + 9) >= MIN_ITEMS
    ]
    for _ in range(per_kind):
        g, d = rng.choice(pairs)
        add("genre + decade", [say("genre + decade", g=g.lower(), d=_decade_said(rng, d))], [both(has(env, "genre", g), years(env, d, d + 9))],
            [f"{g}, {d}s"])  # fmt: skip
    for _ in range(per_kind):
        if rng.random() < 0.5:
            add("recency", [say("recent")], [years(env, newest - RECENT_SPAN + 1, None)], ["recent"])
        else:
            add("recency", [say("classic")], [years(env, None, CLASSIC_BEFORE - 1)], ["classic"])
    for kind, people in (
        ("actor", actors),
        ("director", directors),
        ("writer", writers if cat == "book" or env.dataset.startswith("opendialkg") else []),
    ):
        key = {"actor": "cast", "director": "director", "writer": "writer"}[kind]
        if not people or not any(attrs.get(key) for attrs in env.item_attributes.values()):  # books have no cast or director
            continue
        for _ in range(per_kind):
            p = rng.choice(people)
            add(kind, [say(kind, p=p)], [has(env, key, p)], [p])
    for _ in range(per_kind):
        liked = rng.choice(popular)
        g = rng.choice([x for x in genres if x not in env.genres_of(liked)] or genres)
        add("liked item + genre", [say("liked item + genre", x=liked, g=g.lower())], [has(env, "genre", g)], [f"{liked}; {g}"])
    for _ in range(per_kind):
        liked = rng.choice(popular)
        g = rng.choice(sorted(env.genres_of(liked)))
        add("liked item + disliked genre", [say("liked item + disliked genre", x=liked, g=g.lower())], [without_genre(env, g)],
            [f"{liked}; not {g}"])  # fmt: skip
    for _ in range(per_kind):
        liked = rng.choice(popular)
        g, d = rng.choice(pairs)
        later = [i for i in env.items_by_genre.get(g, ()) if (y := env.year_of.get(i)) and y > d + 9]
        if len(later) < MIN_ITEMS:
            continue
        turns = [say("turn 1", x=liked), say("turn 2", g=g.lower()), say("turn 3", d=_decade_said(rng, d)), say("turn 4")]
        checks: list[Check | None] = [
            None,
            has(env, "genre", g),
            both(has(env, "genre", g), years(env, d, d + 9)),
            both(has(env, "genre", g), years(env, d + 10, None)),
        ]
        add("three-turn refinement", turns, checks, [liked, g, f"{g}, {d}s", f"{g}, after {d + 9}"])
    return out


# ---- running ---------------------------------------------------------------------------------------------


def converse(system: System, env: ExpertEnv, request: Request) -> list[Prediction]:
    """The system's prediction at each user turn of ``request``."""
    sample = RecSample(env.dataset, "wishes", "wishes", 0, (Turn("user", request.turns[0]),), (), "")
    preds: list[Prediction] = []
    if isinstance(system, Conversational):
        session = system.session(sample)
        for n in range(len(request.turns)):
            preds.append(session(None if n == 0 else request.turns[n]))
        return preds
    context: list[Turn] = []
    for text in request.turns:
        context.append(Turn("user", text))
        pred = system.predict(replace(sample, context=tuple(context)))
        preds.append(pred)
        top = pred.ranked[:1] if pred.subtask == RECOMMENDATION else []
        context.append(Turn("recommender", f"You might like {top[0]}." if top else pred.response, tuple(top)))
    return preds


def score(env: ExpertEnv, request: Request, preds: list[Prediction]) -> list[tuple[str, float, float, str]]:
    """``(row, top-1, top-10, top item)`` of each scored turn of ``request``."""
    named = {env.film_key.get(i, i) for text in request.turns for i in env.linker.link(text).items}
    rows = []
    for n, (check, pred) in enumerate(zip(request.checks, preds, strict=True)):
        if check is None:
            continue
        ranked = pred.ranked[:10] if pred.subtask == RECOMMENDATION else []

        def meets(item: str, check: Check = check) -> bool:
            return env.film_key.get(item, item) not in named and check(item)

        row = request.kind if len(request.turns) == 1 else f"{request.kind}, turn {n + 1}"
        top = ranked[0] if ranked else ""
        rows.append((row, float(bool(ranked) and meets(ranked[0])), sum(map(meets, ranked)) / 10, top))
    return rows


def evaluate(args: WishesArguments, progress: bool = True) -> dict[str, Any]:
    """Every system on the generated requests; writes ``<results>/wishes/<dataset>/wishes.json`` and
    ``tables.md`` and returns the JSON."""
    from eval.harness import RunConfig, make_system
    from tools import default_experts
    from tools.base import subtask_of
    from tools.env import expert_env

    env = expert_env(args.dataset, args.data_root)
    names = []
    for name in args.systems:
        if name == "expert:all":
            names += [
                f"expert:{t.name}"
                for t in default_experts(args.dataset, args.data_root, validated_only=False)
                if subtask_of(t) == RECOMMENDATION
            ]
        else:
            names.append(name)
    cfg = RunConfig.of(args, systems=names, metrics="rec")
    requests = generate(env, args.per_kind, args.seed, args.phrasings)
    shared: dict[str, Any] = {}
    per_system: dict[str, dict[str, list[tuple[float, float]]]] = {}
    transcripts: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        system = make_system(name, cfg, shared)
        rows: dict[str, list[tuple[float, float]]] = {}
        for request in tqdm(requests, desc=f"wishes/{args.dataset} {name}", disable=not progress):
            preds = converse(system, env, request)
            for row, top1, top10, top in score(env, request, preds):
                rows.setdefault(row, []).append((top1, top10))
                transcripts.setdefault(name, []).append(
                    {"row": row, "turns": request.turns, "labels": request.labels, "top": top, "met": top1}
                )
        per_system[name] = rows
    table = report(per_system)
    folder = args.results_dir / "wishes" / args.dataset / ("" if args.phrasings == "standard" else args.phrasings)
    folder.mkdir(parents=True, exist_ok=True)
    result = {"dataset": args.dataset, "per_kind": args.per_kind, "seed": args.seed, "phrasings": args.phrasings, "systems": names,
              "table": table}  # fmt: skip
    (folder / "wishes.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    (folder / "transcripts.json").write_text(json.dumps(transcripts, indent=1), encoding="utf-8")
    (folder / "tables.md").write_text(markdown(result), encoding="utf-8")
    return result


def report(per_system: dict[str, dict[str, list[tuple[float, float]]]]) -> list[dict[str, Any]]:
    """One row per (kind, system): n, top-1 and top-10 with CIs, and the first system's paired test."""
    names = list(per_system)
    out = []
    first = names[0]
    pvals: list[float] = []
    for kind in per_system[first]:
        for name in names:
            values = per_system[name].get(kind, [])
            top1 = [v[0] for v in values]
            top10 = [v[1] for v in values]
            row: dict[str, Any] = {"kind": kind, "system": name, "n": len(values), "top1": sum(top1) / max(len(top1), 1),
                                   "top1_ci": list(bootstrap_ci(top1)) if len(set(top1)) > 1 else [top1[0], top1[0]] if top1 else [0.0, 0.0],
                "top10": sum(top10) / max(len(top10), 1)}  # fmt: skip
            if name != first and len(values) == len(per_system[first][kind]):
                c = compare_paired([v[0] for v in per_system[first][kind]], top1)
                row["vs_first_p"] = c.ttest_p
                pvals.append(c.ttest_p)
            out.append(row)
    adjusted = iter(holm(pvals)) if pvals else iter([])
    for row in out:
        if "vs_first_p" in row:
            row["vs_first_holm"] = next(adjusted)
    return out


def markdown(result: dict[str, Any]) -> str:
    """The result as a Markdown table."""
    lines = [f"# Requests met on {result['dataset']} ({result['per_kind']} generated requests a kind, seed {result['seed']}, "
             f"{result.get('phrasings', 'standard')} phrasings)", "",
             f"| kind | system | n | top-1 [95% CI] | top-10 share | {result['systems'][0]} above it (Holm p) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in result["table"]:
        lo, hi = r["top1_ci"]
        p = f"{r['vs_first_holm']:.2g}" if "vs_first_holm" in r else ""
        lines.append(f"| {r['kind']} | {r['system']} | {r['n']} | {r['top1']:.3f} [{lo:.3f}, {hi:.3f}] | {r['top10']:.3f} | {p} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(WishesArguments, prog="python -m eval wishes").parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    result = evaluate(args)
    print(markdown(result))
    if args.publish:
        key = f"{args.dataset}, {args.phrasings} phrasings" + (f" ({args.model})" if args.model else "")
        publish("wishes", key, markdown(result), command_line("eval wishes", argv), data=result)
    print(f"results: {args.results_dir / 'wishes' / args.dataset / ('' if args.phrasings == 'standard' else args.phrasings)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
