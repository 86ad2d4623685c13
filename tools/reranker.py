"""Reranker expert: a learned scorer over the union of the other recommenders' candidates.

Each base recommender (popularity with preferences, and every trained learned expert: KBRD, SASRec,
the text retriever) proposes its top :data:`POOL`; the knowledge graph adds the items of the people
the dialogue names, and the training dialogues add the items most often mentioned together with the
ones the dialogue names. Every candidate gets :data:`CONTEXT_FEATURES` plus three features per base
(reciprocal rank, in its top 10, in its pool), and a small network scores them, trained listwise
(softmax cross-entropy of the turn's targets among its candidates).

**Repeats.** The published figures (CRSLab, UniCRS, iEvaLM-CRS) score every item of the reference turn,
an item the dialogue named before included ("Who starred in The Godfather Part II?" answered "The
Godfather Part II stars Al Pacino": a third of OpenDialKG's test targets, a tenth of ReDial's), and their
models rank those items too. The tool never recommends an item the dialogue names, so the reranker holds
two scorers over the same candidates: the tool's, over the candidates the dialogue does not name, and
a second one, for the published protocol only (:func:`ranker`, what ``tools.bench`` scores), over every
candidate with :data:`REPEAT_FEATURES` added (named in the dialogue, in its last utterance, by the
assistant). Each is chosen and trained the same way.

It is trained on the **validation** split, which none of the base experts trained on (their scores
on training dialogues are overfitted, so a reranker fitted there would learn to trust them too much).
The width and the epochs are chosen by 5-fold cross-validation grouped by dialogue; the out-of-fold
rankings give the validation HIT@10 and the paired test against the popularity floor, so the verdict
that offers or withholds it is measured on turns it did not train on. Then it is refitted on the
whole validation split.

The checkpoint records the base experts and a fingerprint of each one's checkpoint and of the catalog:
a base retrained afterwards, or another catalog, is refused with the command that retrains it.
Written here rather than with a learning-to-rank library: the model is a 16-unit MLP over ~20
features, and a torch module keeps it in the experts' checkpoint format (``weights_only`` loading).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from langchain_core.tools import BaseTool
from torch import nn
from tqdm import tqdm

from crsdata.loaders import load_dialogues
from crsdata.metrics import group_folds, hit_at_k, paired_ttest
from crsdata.paths import DataError
from crsdata.schema import RecSample
from tools.dialogue import format_turns, parse_dialogue
from tools.env import ExpertEnv
from tools.learned import (
    FLOOR_ALPHA,
    CheckpointMissing,
    TrainConfig,
    checkpoint_dir,
    floor_evidence,
    learned_tool,
    load_checkpoint,
    load_state,
    save_checkpoint,
    seed_all,
    split_samples,
    train_command,
)
from tools.preferences import stated_first

NAME = "reranker"
POOL = 50  # candidates taken from each base expert
COOCCUR = 50  # candidates taken from the items co-mentioned with the dialogue's items
FOLDS = 5
#: (hidden width, epochs) tried by cross-validation; width 0 is a linear scorer.
GRID = ((0, 3), (0, 10), (16, 3), (16, 10))
CONTEXT_FEATURES = (
    "log popularity",
    "people of the last utterance it has",
    "people of the last two utterances it has",
    "people of the dialogue it has",
    "people it shares with the named items",
    "liked genres it has",
    "genre affinity with the named items",
    "log co-mentions with the named items",
    "named items",
)
BASE_FEATURES = ("1/rank", "in top 10", "in pool")
#: The last columns of a candidate's row; only the protocol scorer reads them (the tool's candidates are never named).
REPEAT_FEATURES = ("named in the dialogue", "named in the last utterance", "named by the assistant")

Rank = Callable[[str, int], list[str]]


def base_rankers(env: ExpertEnv, names: tuple[str, ...] | None = None) -> dict[str, Rank]:
    """The base experts' ranking functions: popularity (with preferences) and the learned experts.

    Args:
        env: The dataset's environment.
        names: The learned experts a checkpoint was trained with (each must load), or ``None`` for
            every learned expert trained for this dataset (training).

    Raises:
        CheckpointMissing: A required base is not trained (names its train command).
    """
    from tools.learned import LEARNED_EXPERTS, learned_module
    from tools.popularity import rank_by_preferences

    out: dict[str, Rank] = {"popularity": lambda text, k: rank_by_preferences(env, text, k)}
    for name in names if names is not None else tuple(n for n in LEARNED_EXPERTS if n != NAME):
        try:
            out[name] = learned_module(name).ranker(env)
        except (CheckpointMissing, DataError):  # untrained, or impossible here (KBRD without a KG)
            if names is not None:  # a base the checkpoint was trained with
                raise
    return out


def fingerprint(env: ExpertEnv, bases: list[str]) -> str:
    """Identifies the catalog and the base checkpoints a reranker's features come from."""
    from tools.retriever import catalog_hash

    h = hashlib.sha256(catalog_hash(env).encode())
    for name in bases:
        for file in ("model.pt", "config.json"):
            path = checkpoint_dir(env.dataset, name) / file
            h.update(path.read_bytes() if path.is_file() else b"-")
    return h.hexdigest()[:16]


class Features:
    """Candidates and their feature rows for a dialogue, from the base experts, the catalog's people
    and the training dialogues' co-mentions."""

    def __init__(self, env: ExpertEnv, bases: dict[str, Rank]) -> None:
        self.env, self.bases = env, bases
        self.comentions: dict[str, Counter[str]] = defaultdict(Counter)
        for dlg in load_dialogues(env.dataset, "train", env.root):
            named = list(dict.fromkeys(i for t in dlg.turns for i in t.items))
            for a in named:
                self.comentions[a].update(b for b in named if b != a)

    @property
    def size(self) -> int:
        """Features per candidate the tool's scorer reads (:data:`REPEAT_FEATURES` come on top)."""
        return len(CONTEXT_FEATURES) + len(BASE_FEATURES) * len(self.bases)

    def __call__(self, dialogue_context: str) -> tuple[list[str], torch.Tensor]:
        """``(candidates, features)`` of a dialogue, the items it names included (:func:`unnamed` leaves them out)."""
        link = self.env.linker.link
        attrs = self.env.item_attributes
        named = link(dialogue_context)
        turns = parse_dialogue(dialogue_context)
        last_said = link(turns[-1][1]) if turns else None
        last = set(last_said.people) if last_said is not None else set()
        recent = last | (set(link(turns[-2][1]).people) if len(turns) > 1 else set())
        people = set(named.people)
        genres = set(named.genres) - set(named.disliked)
        people_of = self.env.people_of
        their_people = Counter(p for item in named.items for p in people_of.get(item, ()))
        their_genres = Counter(g for item in named.items for g in attrs.get(item, {}).get("genre", ()))
        comentioned: Counter[str] = Counter()
        for item in named.items:
            comentioned.update(self.comentions.get(item, {}))
        ranks = {name: rank(dialogue_context, POOL) for name, rank in self.bases.items()}
        pool = [i for ranked in ranks.values() for i in ranked]
        pool += sorted(i for p in people for i in self.env.items_by_person.get(p, ()))
        pool += [i for i, _ in comentioned.most_common(COOCCUR)]
        pool += named.items
        candidates = [i for i in dict.fromkeys(pool) if i in attrs]
        named_set = set(named.items)
        in_last = set(last_said.items) if last_said is not None else set()
        by_assistant = {i for role, text in turns if role == "recommender" for i in link(text).items}
        positions = {name: {item: r for r, item in enumerate(ranked, start=1)} for name, ranked in ranks.items()}
        rows = []
        for item in candidates:
            mine = people_of.get(item, frozenset())
            row = [
                math.log1p(self.env.popularity.get(item, 0)),
                len(mine & last),
                len(mine & recent),
                len(mine & people),
                sum(their_people[p] for p in mine),
                len(attrs[item]["genre"] & genres),
                sum(their_genres[g] for g in attrs[item]["genre"]) / (1 + len(named.items)),
                math.log1p(comentioned.get(item, 0)),
                len(named.items),
            ]
            for name in self.bases:
                r = positions[name].get(item)
                row += [1 / r if r else 0.0, float(bool(r) and r <= 10), float(bool(r))]  # type: ignore[operator]
            row += [float(item in named_set), float(item in in_last), float(item in by_assistant)]
            rows.append(row)
        return candidates, torch.tensor(rows, dtype=torch.float32).reshape(len(rows), self.size + len(REPEAT_FEATURES))


class Scorer(nn.Module):
    """Standardised features -> one score per candidate (linear when ``hidden`` is 0)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_features: int, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = (
            nn.Linear(n_features, 1) if hidden == 0 else nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Linear(hidden, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of the rows of ``x``."""
        return self.net((x - self.mean) / self.std).squeeze(-1)


def with_tail(ranking: list[str], rest: list[str], n: int) -> list[str]:
    """``ranking`` followed by the items of ``rest`` it lacks, ``n`` in all.

    >>> with_tail(["b", "a"], ["a", "c", "d"], 3), with_tail(["b", "a"], ["a", "c"], 1)
    (['b', 'a', 'c'], ['b'])
    """
    if n <= len(ranking):
        return ranking[:n]
    have = set(ranking)
    return [*ranking, *(i for i in rest if i not in have)][:n]


def unnamed(candidates: list[str], x: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """The tool's view of :class:`Features`' output: the candidates the dialogue does not name, without
    the :data:`REPEAT_FEATURES` columns."""
    column = REPEAT_FEATURES.index("named in the dialogue") - len(REPEAT_FEATURES)
    keep = (x[:, column] == 0).nonzero().flatten()
    return [candidates[i] for i in keep.tolist()], x[keep, : -len(REPEAT_FEATURES)]


@dataclass
class Example:
    """One validation turn: its dialogue, candidates, features and targets."""

    sample: RecSample
    text: str
    candidates: list[str]
    x: torch.Tensor
    y: torch.Tensor  # 1 for the targets among the candidates

    def without_repeats(self) -> Example:
        """The tool's view of this turn (:func:`unnamed`)."""
        candidates, x = unnamed(self.candidates, self.x)
        return Example(self.sample, self.text, candidates, x, torch.tensor([float(c in self.sample.targets) for c in candidates]))


def fit(examples: list[Example], n_features: int, hidden: int, epochs: int, cfg: TrainConfig) -> Scorer:
    """Listwise training: per turn, the softmax cross-entropy of its targets among its candidates."""
    seed_all(cfg.seed)
    model = Scorer(n_features, hidden)
    usable = [e for e in examples if e.y.sum() > 0]
    if usable:
        xs = torch.cat([e.x for e in usable])
        model.mean.copy_(xs.mean(0))
        model.std.copy_(xs.std(0).clamp_min(1e-4) if len(xs) > 1 else torch.ones(n_features))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    rng = random.Random(cfg.seed)
    model.train()
    for _ in range(epochs):
        rng.shuffle(usable)
        for e in usable:
            loss = -(torch.log_softmax(model(e.x), 0) * e.y / e.y.sum()).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model


def ordered(model: Scorer, candidates: list[str], x: torch.Tensor) -> list[str]:
    """Candidates by descending score (ties keep the candidates' order)."""
    if not candidates:
        return []
    with torch.no_grad():
        scores = model(x)
    return [candidates[i] for i in torch.sort(-scores, stable=True).indices.tolist()]


def cross_validate(examples: list[Example], n_features: int, hidden: int, epochs: int, cfg: TrainConfig) -> list[list[str]]:
    """Out-of-fold rankings of every example."""
    fold = group_folds([e.sample.dialog_id for e in examples], FOLDS)
    out: list[list[str]] = [[] for _ in examples]
    for f in range(FOLDS):
        held = [i for i, g in enumerate(fold) if g == f]
        if not held:
            continue
        model = fit([e for e, g in zip(examples, fold, strict=True) if g != f], n_features, hidden, epochs, cfg)
        for i in held:
            out[i] = ordered(model, examples[i].candidates, examples[i].x)
    return out


class Reranker:
    """Ranks items for a dialogue text with a trained scorer over the base experts' candidates."""

    def __init__(self, env: ExpertEnv, features: Features, model: Scorer, repeats: Scorer) -> None:
        self.env, self.features, self.model, self.repeats = env, features, model, repeats

    def rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The ``top_k`` items for a dialogue, after what the user stated; never an item it names. The
        scorer ranks only the bases' candidates, so when the whole catalog is asked for (a constraint
        was stated) the rest follows in popularity order: a 1990s request must reach the 1990s films
        that no base put among its candidates."""
        return stated_first(
            self.env, dialogue_context, lambda n: with_tail(self.model_rank(dialogue_context, n), self.env.ranked_by_popularity, n), top_k
        )

    def model_rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The tool scorer's own ``top_k`` of the candidates the dialogue does not name."""
        return ordered(self.model, *unnamed(*self.features(dialogue_context)))[:top_k]

    def rank_with_repeats(self, dialogue_context: str, top_k: int) -> list[str]:
        """The published protocol's ranking (module docstring): the items the dialogue names are candidates
        too, ordered by the protocol scorer, after the stated likes and dislikes."""
        return stated_first(
            self.env, dialogue_context, lambda n: ordered(self.repeats, *self.features(dialogue_context))[:n], top_k, exclude_named=False
        )


def build_examples(env: ExpertEnv, features: Features, samples: list[RecSample]) -> list[Example]:
    """The candidates, features and targets of every sample."""
    examples = []
    for s in tqdm(samples, desc=f"{NAME}/{env.dataset} candidates", leave=False):
        text = format_turns(s.context)
        candidates, x = features(text)
        examples.append(Example(s, text, candidates, x, torch.tensor([float(c in s.targets) for c in candidates])))
    return examples


def base_hits(examples: list[Example], features: Features, rows: bool = False) -> dict[str, Any]:
    """HIT@10 of each base expert on the examples (its rows when ``rows``), read from its "in top 10" feature."""
    out: dict[str, Any] = {}
    for b, name in enumerate(features.bases):
        column = len(CONTEXT_FEATURES) + len(BASE_FEATURES) * b + 1
        hits = [float(t in e.candidates and bool(e.x[e.candidates.index(t), column])) for e in examples for t in e.sample.targets]
        out[name] = hits if rows else sum(hits) / max(1, len(hits))
    return out


def hit_rows(examples: list[Example], rankings: list[list[str]]) -> list[float]:
    """HIT@10 of every target row."""
    return [hit_at_k(ranked, t, 10) for e, ranked in zip(examples, rankings, strict=True) for t in e.sample.targets]


def mean_hit10(examples: list[Example], rankings: list[list[str]]) -> float:
    """HIT@10 over every target row."""
    hits = hit_rows(examples, rankings)
    return sum(hits) / max(1, len(hits))


def versus_best_base(examples: list[Example], features: Features, oof: list[list[str]]) -> dict[str, Any]:
    """Does the reranker beat its best base expert on the out-of-fold validation rows?

    A reranker no better than one of its inputs only adds that input's answer at a higher cost, so it
    is withheld then (:func:`tools.learned.offer_verdict` reads ``beats``): one-sided paired t-test at
    :data:`tools.learned.FLOOR_ALPHA`.
    """
    hits = base_hits(examples, features, rows=True)
    name = max((n for n in hits if n != "popularity"), key=lambda n: sum(hits[n]), default="popularity")
    mine = hit_rows(examples, oof)
    pvalue = paired_ttest(mine, hits[name], alternative="greater").pvalue if len(mine) > 1 else 1.0
    return {"expert": name, "hit@10": sum(mine) / max(1, len(mine)), "their_hit@10": sum(hits[name]) / max(1, len(mine)),
            "pvalue": pvalue, "beats": pvalue < FLOOR_ALPHA}  # fmt: skip


def choose(examples: list[Example], n_features: int, cfg: TrainConfig) -> tuple[Scorer, list[list[str]], dict[str, Any]]:
    """Width and epochs by cross-validation (:data:`GRID`), then the refit on every example: the scorer,
    its out-of-fold rankings and the search's record."""
    grid = []
    best: tuple[float, int, int, list[list[str]]] | None = None
    for hidden, epochs in GRID:
        oof = cross_validate(examples, n_features, hidden, epochs, cfg)
        score = mean_hit10(examples, oof)
        grid.append({"hidden": hidden, "epochs": epochs, "cv_hit@10": score})
        if best is None or score > best[0]:
            best = (score, hidden, epochs, oof)
    assert best is not None
    score, hidden, epochs, oof = best
    untrained = fit(examples, n_features, hidden, 0, cfg)
    record = {"hidden": hidden, "epochs_chosen": epochs, "grid": grid, "valid_hit@10": score,
              "valid_hit@10_untrained": mean_hit10(examples, [ordered(untrained, e.candidates, e.x) for e in examples])}  # fmt: skip
    return fit(examples, n_features, hidden, epochs, cfg), oof, record


def train(env: ExpertEnv, cfg: TrainConfig) -> dict[str, Any]:
    """Build the validation examples; choose, train and save the tool's scorer and the protocol scorer."""
    start = time.perf_counter()
    bases = base_rankers(env)
    features = Features(env, bases)
    everything = build_examples(env, features, split_samples(env, "valid"))
    examples = [e.without_repeats() for e in everything]
    model, oof, tool = choose(examples, features.size, cfg)
    repeats, _, protocol = choose(everything, features.size + len(REPEAT_FEATURES), cfg)
    by_text = {e.text: ranked for e, ranked in zip(examples, oof, strict=True)}
    names = [n for n in bases if n != "popularity"]
    config = {**cfg.as_dict(), "bases": names, "hidden": tool["hidden"], "epochs_chosen": tool["epochs_chosen"],
              "repeats_hidden": protocol["hidden"], "n_features": features.size, "fingerprint": fingerprint(env, names)}  # fmt: skip
    rows = sum(len(e.sample.targets) for e in examples)
    result: dict[str, Any] = {
        "valid_hit@10": tool["valid_hit@10"],  # out-of-fold: turns the scorer did not train on
        "valid_hit@10_untrained": tool["valid_hit@10_untrained"],
        "bases_valid_hit@10": base_hits(examples, features),
        "grid": tool["grid"],
        "valid_rows": rows,
        "candidate_recall": sum(t in e.candidates for e in examples for t in e.sample.targets) / max(1, rows),
        # the floor comparison on the same out-of-fold rankings, after the stated likes and dislikes
        "versus": versus_best_base(examples, features, oof),
        "floor": floor_evidence(env, lambda text, k: stated_first(env, text, lambda n: by_text.get(text, [])[:n], k)),
        "protocol": {**protocol, "candidate_recall": sum(t in e.candidates for e in everything for t in e.sample.targets) / max(1, rows)},
    }
    result["train_seconds"] = time.perf_counter() - start
    save_checkpoint(env.dataset, NAME, nn.ModuleDict({"tool": model, "repeats": repeats}).state_dict(), config, result)
    return result


def load_ranker(env: ExpertEnv) -> tuple[Reranker, dict[str, Any]]:
    """The trained reranker and its metrics.

    Raises:
        CheckpointMissing: Not trained, or trained on another catalog or other base checkpoints, or by
            an older version (names the command that retrains it).
    """
    state, config, metrics = load_checkpoint(env.dataset, NAME)
    names = tuple(config["bases"])
    if config.get("fingerprint") != fingerprint(env, list(names)):
        raise CheckpointMissing(
            f"the {NAME} for {env.dataset} was trained on another catalog or other {', '.join(names)} checkpoints; "
            f"retrain it with `{train_command(NAME, env.dataset)}`"
        )
    features = Features(env, base_rankers(env, names))
    n = config["n_features"]
    scorers = nn.ModuleDict(
        {"tool": Scorer(n, config["hidden"]), "repeats": Scorer(n + len(REPEAT_FEATURES), config.get("repeats_hidden", 0))}
    )
    load_state(scorers, state, env.dataset, NAME)
    scorers.eval()
    return Reranker(env, features, scorers["tool"], scorers["repeats"]), metrics  # type: ignore[arg-type]


def ranker(env: ExpertEnv) -> Rank:
    """The trained reranker's ranking function (the tool's: never an item the dialogue names)."""
    return load_ranker(env)[0].rank


def bench_rankers(env: ExpertEnv) -> dict[str, Rank]:
    """What ``tools.bench`` scores, from one loaded checkpoint: the tool's ranking, and as ``"+repeats"``
    the ranking the published figures would score (:meth:`Reranker.rank_with_repeats`)."""
    reranker = load_ranker(env)[0]
    return {"": reranker.rank, "+repeats": reranker.rank_with_repeats}


DOC = """Reranker: combines every other recommender. It takes the top 50 of popularity, KBRD, SASRec and the
text retriever (those trained for {dataset}), adds the items of the people the dialogue names and the items
real conversations mention together with the ones it names, and orders them with a small network trained
on held-out {dataset} conversations (the experts' ranks, the knowledge-graph links to the people and items
mentioned, popularity). The most accurate recommender when several experts apply. English.
Measured: validation HIT@10 {hit:.3f} (cross-validated).
"""


def make_tool(env: ExpertEnv) -> BaseTool:
    """The trained reranker of ``env``'s dataset as a tool."""
    reranker, metrics = load_ranker(env)
    return learned_tool("reranker_recommender", reranker.rank, DOC, env, metrics, "Putting together everything you said: {items}.", NAME)
