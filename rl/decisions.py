"""Decision data for the manager: every recommender turn of a corpus split as one decision example.

``python -m rl.decisions --dataset redial`` writes ``$LLMCRS_HOME/decisions/<dataset>/<split>.jsonl``
(train, valid and test) with a progress bar. One line per recommender turn (after the first turn):

* ``context``: the dialogue before the turn, ``[[role, text], ...]``;
* ``label``: the sub-task the reference turn performs (:func:`agent.heuristics.label_turn`, which
  sees the reference response; the manager only sees the context);
* ``targets`` and ``reference``: the turn's items and text (empty targets: not a recommendation row);
* ``is_sample``: whether the turn is an evaluation sample of the split (CRSLab's rows, where HIT is scored);
* ``rankings``: for sample rows, the top-50 of every offered recommendation expert, run once on the
  same arguments the graph passes (experts are deterministic, so the matching reward of every expert
  is known without running it again);
* ``responses``: what the graph would answer for each action (sub-task, expert) by the template
  (the expert's output; for a recommender "You might like <top item>."), so the BLEU part of the
  RLPF reward is known for every action too.

Then the manager's features (:mod:`agent.manager`) are computed once per example and cached next
to it (``<split>.features.pt``); training and evaluation read the cache, never the LLM again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from agent.text import offer
from crsdata.paths import home_dir, run_cli
from crsdata.schema import SPLITS, Dialogue, Role

TOP_K = 50
VERSION = 4
AUGMENT_SHARE = 0.3  # of the training split's sample turns, followed by a templated "why" or attribute question


@dataclass
class DecisionDataArguments:
    """``python -m rl.decisions``: build the decision data (and features) of a dataset."""

    dataset: str = field(default="redial", metadata={"help": "dataset"})
    data_root: str | None = field(default=None, metadata={"help": "data directory"})
    splits: str = field(default="train,valid,test", metadata={"help": "comma-separated splits"})
    max_train: int = field(default=4000, metadata={"help": "cap of the training split (seeded sample)"})
    max_valid: int = field(default=5000, metadata={"help": "cap of the validation split (seeded sample); test is kept whole"})
    features: bool = field(default=True, metadata={"help": "also compute the manager's LLM features"})
    model: str = field(default="embedded", metadata={"help": "the manager LLM whose hidden states are the features"})
    seed: int = field(default=0)
    force: bool = field(default=False, metadata={"help": "rebuild the decisions even when they are current (features are reused by text)"})
    relabel: bool = field(default=False, metadata={"help": "only recompute the sub-task labels of the existing decisions"})


def decisions_dir(dataset: str) -> Path:
    """Where a dataset's decision data lives."""
    return home_dir() / "decisions" / dataset


def decision_path(dataset: str, split: str) -> Path:
    """The JSONL file of one split."""
    return decisions_dir(dataset) / f"{split}.jsonl"


def recommender_turns(dialogues: list[Dialogue]) -> Iterator[tuple[Dialogue, int, bool]]:
    """``(dialogue, turn index, is evaluation sample)`` of every recommender turn after the first turn."""
    for dlg in dialogues:
        samples = {s.turn_index for s in dlg.rec_samples()}
        for i, turn in enumerate(dlg.turns):
            if turn.role == "recommender" and i > 0:
                yield dlg, i, i in samples


def action_responses(env: Any, tools: dict[str, Any], dialogue: list[tuple[Role, str]], rankings: dict[str, list[str]]) -> dict[str, str]:
    """The template answer of every action: ``<sub-task>`` for the one-expert sub-tasks, ``recommendation:<expert>``."""
    from agent.heuristics import resolve_args
    from tools.base import subtask_of
    from tools.dialogue import format_dialogue
    from tools.invoke import invoke_expert
    from tools.subtasks import DETAIL_SEARCH, ELICITATION, EXPLANATION

    out: dict[str, str] = {}
    text = format_dialogue(dialogue)
    for name in (ELICITATION, EXPLANATION, DETAIL_SEARCH):
        tool = next((t for t in tools.values() if subtask_of(t) == name), None)
        if tool is None:
            continue
        out[name] = str(invoke_expert(tool, resolve_args(name, dialogue, [], env, text), TOP_K, []).get("text", ""))
    for expert, ranked in rankings.items():
        out[f"recommendation:{expert}"] = offer(ranked[0]) if ranked else ""
    return out


WHY_ASKS = ("Why that one?", "why do you think I would like it?", "What makes it a good pick for me?", "Why {item}?",
            "Can you explain why you picked it?", "why would I enjoy {item}")  # fmt: skip
DETAIL_ASKS = ("Who directed {item}?", "Who is in {item}?", "What is {item} about?", "When did {item} come out?",
               "who stars in {item}", "What genre is {item}?", "Who wrote {item}?", "Who directed it?", "What is it about?",
               "who is in that one?", "When did it come out?", "who stars in it")  # fmt: skip


def follow_up_rows(rows: list[tuple[Dialogue, int, bool]], share: float, seed: int) -> list[tuple[list[tuple[Role, str]], str, str]]:
    """Follow-up turns the corpora rarely have: after a recommender turn that named an item, the user
    asks why (label: explanation) or about an attribute of the item (label: item detail search).

    ReDial, OpenDialKG and INSPIRED label under 2% of turns as explanation or detail search, too few for
    the manager to learn them; these are written from templates over the real dialogues, on the
    training split only, and marked (``"augmented": true``) so that no evaluation counts them.
    """
    import random

    from tools.subtasks import DETAIL_SEARCH, EXPLANATION, RECOMMENDATION

    rng = random.Random(seed)
    out = []
    for dlg, i, is_sample in rows:
        if not is_sample or rng.random() > share:
            continue
        item = dlg.turns[i].items[0]
        dialogue: list[tuple[Role, str]] = [(t.role, t.text) for t in dlg.turns[: i + 1]]
        ask = rng.random()
        why: tuple[Role, str] = ("user", rng.choice(WHY_ASKS).format(item=item))
        detail: tuple[Role, str] = ("user", rng.choice(DETAIL_ASKS).format(item=item))
        if ask < 0.3:
            out.append(([*dialogue, why], EXPLANATION, "augmented"))
        elif ask < 0.6:
            out.append(([*dialogue, detail], DETAIL_SEARCH, "augmented"))
        elif ask < 0.75:  # a question about the item after its explanation
            explained: tuple[Role, str] = ("recommender", f"Why {item}? It shares what you said you like.")
            out.append(([*dialogue, why, explained, detail], DETAIL_SEARCH, "augmented"))
        elif ask < 0.85:  # opening with a question about a named item
            out.append(([("user", rng.choice(DETAIL_ASKS[:7]).format(item=item))], DETAIL_SEARCH, "augmented"))
        else:  # a detail exchange earlier does not make the next request a detail search
            before, request = dialogue[: i - 1], dialogue[i - 1]
            if request[0] == "user":
                asked: list[tuple[Role, str]] = [detail, ("recommender", f"{item} is the one I mean.")]
                out.append(([*before, *asked, request], RECOMMENDATION, "augmented"))
    return out


def build_split(dataset: str, split: str, data_root: str | None, max_examples: int | None, seed: int, progress: bool = True) -> Path:
    """Write one split's decision examples; return the file."""
    import random

    from agent.heuristics import label_turn
    from crsdata.loaders import load_dialogues
    from tools import default_experts
    from tools.base import subtask_of
    from tools.dialogue import format_dialogue
    from tools.env import expert_env

    env = expert_env(dataset, data_root)
    tools = {t.name: t for t in default_experts(dataset, data_root)}
    recommenders = [n for n, t in tools.items() if subtask_of(t) == "recommendation"]
    turns = list(recommender_turns(load_dialogues(dataset, split, env.root)))
    if max_examples is not None and len(turns) > max_examples:
        keep = set(random.Random(seed).sample(range(len(turns)), max_examples))
        turns = [t for i, t in enumerate(turns) if i in keep]
    path = decision_path(dataset, split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for dlg, i, is_sample in tqdm(turns, desc=f"decisions {dataset}/{split}", disable=not progress, unit="turn"):
            turn = dlg.turns[i]
            dialogue: list[tuple[Role, str]] = [(t.role, t.text) for t in dlg.turns[:i]]
            rankings: dict[str, list[str]] = {}
            if is_sample:
                text = format_dialogue(dialogue)
                for name in recommenders:
                    res = tools[name].invoke({"category": env.category, "dialogue_context": text, "top_k": TOP_K})
                    rankings[name] = list(res.get("items", []))[:TOP_K]
            row = {
                "id": f"{dataset}/{split}/{dlg.dialog_id}/{i}",
                "context": [list(x) for x in dialogue],
                "label": label_turn(dialogue, turn.text, turn.items, env),
                "targets": list(turn.items) if is_sample else [],
                "reference": turn.text,
                "is_sample": is_sample,
                "rankings": rankings,
                "responses": action_responses(env, tools, dialogue, rankings),
            }
            fh.write(json.dumps(row) + "\n")
        extra = follow_up_rows(turns, AUGMENT_SHARE, seed) if split == "train" else []
        for n, (dialogue, label, _) in enumerate(tqdm(extra, desc=f"follow-ups {dataset}/{split}", disable=not progress, unit="turn")):
            row = {"id": f"{dataset}/{split}/augmented/{n}", "context": [list(x) for x in dialogue], "label": label, "targets": [],
                   "reference": "", "is_sample": False, "augmented": True, "rankings": {}, "responses": action_responses(env, tools, dialogue, {})}  # fmt: skip
            fh.write(json.dumps(row) + "\n")
    tmp.replace(path)
    meta = {"version": VERSION, "dataset": dataset, "split": split, "rows": len(turns), "recommenders": recommenders,
            "checkpoints": {n: checkpoint_of(tools[n]) for n in recommenders}}  # fmt: skip
    path.with_suffix(".meta.json").write_text(json.dumps(meta, indent=1))
    return path


def checkpoint_of(tool: Any) -> str | None:
    """The version of the checkpoint a recommender tool ranks with (``None``: it has none, e.g. popularity)."""
    from tools.learned import checkpoint_version

    folder = (tool.metadata or {}).get("checkpoint_dir")
    return checkpoint_version(Path(folder)) if folder else None


def add_rankings(dataset: str, split: str, data_root: str | None = None, progress: bool = True) -> list[str]:
    """Add the rankings (and template answers) of the offered recommenders a current split lacks, e.g.
    after ``python -m tools.train reranker``, and recompute those of the recommenders retrained since they
    were ranked (their checkpoint changed; data written before checkpoints were recorded counts as stale);
    every other field is kept, so no rebuild is needed. Returns the experts added or recomputed."""
    from tools import default_experts
    from tools.base import subtask_of
    from tools.dialogue import format_dialogue
    from tools.env import expert_env

    env = expert_env(dataset, data_root)
    tools = {t.name: t for t in default_experts(dataset, data_root)}
    path = decision_path(dataset, split)
    meta_path = path.with_suffix(".meta.json")
    meta = json.loads(meta_path.read_text())
    have, ranked_with = meta["recommenders"], meta.get("checkpoints", {})
    versions = {n: checkpoint_of(t) for n, t in tools.items() if subtask_of(t) == "recommendation"}
    new = [n for n, version in versions.items() if n not in have or ranked_with.get(n) != version]
    if not new:
        return []
    rows = load_split(dataset, split)
    for row in tqdm([r for r in rows if r["is_sample"]], desc=f"rankings {dataset}/{split}: {', '.join(new)}", disable=not progress):
        text = format_dialogue([(r, t) for r, t in row["context"]])
        for name in new:
            res = tools[name].invoke({"category": env.category, "dialogue_context": text, "top_k": TOP_K})
            ranked = list(res.get("items", []))[:TOP_K]
            row["rankings"][name] = ranked
            row["responses"][f"recommendation:{name}"] = offer(ranked[0]) if ranked else ""
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)
    checkpoints = {**ranked_with, **{n: versions[n] for n in new}}
    meta_path.write_text(json.dumps({**meta, "recommenders": list(dict.fromkeys([*have, *new])), "checkpoints": checkpoints}, indent=1))
    return new


def relabel_split(dataset: str, split: str, data_root: str | None = None) -> int:
    """Recompute the ``label`` of a split's corpus rows with the current :func:`agent.heuristics.label_turn`
    (rankings and answers are kept, since they do not depend on the label); returns how many changed."""
    from agent.heuristics import label_turn
    from crsdata.loaders import load_dialogues
    from tools.env import expert_env

    env = expert_env(dataset, data_root)
    turns = {f"{dataset}/{split}/{d.dialog_id}/{i}": (d, i) for d, i, _ in recommender_turns(load_dialogues(dataset, split, env.root))}
    rows, changed = load_split(dataset, split), 0
    for row in rows:
        if row["id"] not in turns:
            continue  # a templated follow-up keeps its label
        dlg, i = turns[row["id"]]
        label = label_turn([(t.role, t.text) for t in dlg.turns[:i]], dlg.turns[i].text, dlg.turns[i].items, env)
        changed += label != row["label"]
        row["label"] = label
    decision_path(dataset, split).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return changed


def load_split(dataset: str, split: str) -> list[dict[str, Any]]:
    """The decision examples of a split.

    Raises:
        FileNotFoundError: Not built yet; the message names the command.
    """
    path = decision_path(dataset, split)
    if not path.is_file():
        raise FileNotFoundError(
            f"no decision data for {dataset}/{split} at {path}; build it with `python -m rl.decisions --dataset {dataset}`"
        )
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def recommenders_of(dataset: str, split: str) -> list[str]:
    """The recommendation experts whose rankings a split's data holds."""
    return list(json.loads(decision_path(dataset, split).with_suffix(".meta.json").read_text())["recommenders"])


def features_path(dataset: str, split: str, model: str = "embedded") -> Path:
    """Cached features of a split's decision data on a model (a local model spec): the embedded model's
    beside the decisions, another model's in a folder of its own (:func:`agent.manager.head_slug`)."""
    from agent.llm import EMBEDDED_NAME
    from agent.manager import head_slug

    name = model_name(model)
    folder = decisions_dir(dataset) if name == EMBEDDED_NAME else decisions_dir(dataset) / head_slug(name)
    return folder / f"{split}.features.pt"


def model_name(spec: str) -> str:
    """The name a local model spec loads under (``embedded`` -> ``SmolLM2-135M-Instruct``, ``hf:<x>`` -> ``<x>``).

    Raises:
        SetupError: The spec is an endpoint (no hidden states).
    """
    from agent.llm import model_name_of
    from agent.manager import require_hidden_states

    require_hidden_states(spec)
    name = model_name_of(spec)
    assert name is not None  # a local spec
    return name


def cache_features(dataset: str, split: str, rows: list[dict[str, Any]], model: str = "embedded", force: bool = False) -> Path:
    """Compute the LLM and state features of decision rows; return the cache file.

    The LLM pass is the expensive part, so its result is kept per decision text (sha1): a rebuild
    reuses every text already computed by the same model and feature version, and runs the LLM only
    on new texts (``force`` recomputes everything)."""
    import hashlib

    import torch

    from agent.llm import load_chat_model
    from agent.manager import FEATURE_VERSION, MAX_TOKENS, HiddenStateModel, decision_text, state_features
    from tools.env import expert_env

    path = features_path(dataset, split, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    env = expert_env(dataset)
    dialogues = [[(r, t) for r, t in row["context"]] for row in rows]
    texts = [decision_text(d, env.category) for d in dialogues]
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    chat = load_chat_model(model)
    if not isinstance(chat, HiddenStateModel):
        raise TypeError(f"model {model!r} gives no hidden states; the trained manager needs a local transformers model")
    known: dict[str, torch.Tensor] = {}
    if path.is_file() and not force:
        old = torch.load(path, weights_only=True)
        if old.get("version") == FEATURE_VERSION and old.get("model") == chat.model_name and "keys" in old:
            known = dict(zip(old["keys"], old["llm"], strict=True))
    todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if todo:
        fresh = chat.hidden_features([t for _, t in todo], max_tokens=MAX_TOKENS, progress=f"features {dataset}/{split}")  # type: ignore[call-arg]
        known.update({k: v.half() for (k, _), v in zip(todo, fresh, strict=True)})
    llm = torch.stack([known[k] for k in keys]) if keys else torch.zeros(0)
    state = torch.tensor([state_features(d, [], env) for d in dialogues], dtype=torch.float32)
    torch.save(
        {
            "ids": [r["id"] for r in rows],
            "keys": keys,
            "llm": llm,
            "state": state,
            "model": chat.model_name,
            "model_sha256": getattr(chat, "weights_sha256", ""),
            "version": FEATURE_VERSION,
        },  # fmt: skip
        path,
    )
    return path


def load_features(dataset: str, split: str, model: str = "embedded") -> dict[str, Any]:
    """The cached features of a split on a model (see :func:`cache_features`).

    Raises:
        FileNotFoundError: Not computed yet, or before the state features changed; names the command.
    """
    import torch

    from agent.manager import STATE_FEATURES

    path = features_path(dataset, split, model)
    flag = "" if model == "embedded" else f" --model {model}"
    if not path.is_file():
        raise FileNotFoundError(
            f"no manager features for {dataset}/{split} at {path}; build them with `python -m rl.decisions --dataset {dataset}{flag}`"
        )
    feats = dict(torch.load(path, weights_only=True))
    if feats["state"].shape[-1] != len(STATE_FEATURES):  # cached before the state features changed: the LLM part is reused
        raise FileNotFoundError(
            f"the manager features at {path} have {feats['state'].shape[-1]} state features, this version {len(STATE_FEATURES)};"
            f" update them (the LLM features are reused) with `python -m rl.decisions --dataset {dataset} --splits {split}{flag}`"
        )
    return feats


def _version(path: Path) -> int | None:
    meta = path.with_suffix(".meta.json")
    return int(json.loads(meta.read_text()).get("version", 0)) if meta.is_file() else None


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(DecisionDataArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    for split in [s for s in args.splits.split(",") if s]:
        if split not in SPLITS:
            raise SystemExit(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
        path = decision_path(args.dataset, split)
        if args.relabel:
            print(f"{path}: {relabel_split(args.dataset, split, args.data_root)} labels changed", flush=True)
            continue
        if args.force or not path.is_file() or _version(path) != VERSION:
            cap = {"train": args.max_train, "valid": args.max_valid}.get(split)
            build_split(args.dataset, split, args.data_root, cap, args.seed)
        elif added := add_rankings(args.dataset, split, args.data_root):
            print(f"{path}: (re)computed the rankings of {', '.join(added)}", flush=True)
        print(f"{path}: {sum(1 for _ in path.open())} decision examples", flush=True)
        if args.features:
            feats = cache_features(args.dataset, split, load_split(args.dataset, split), args.model)
            print(f"{feats}: features cached", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
