"""One loader API over every corpus, normalised into :class:`~crsdata.schema.Dialogue`.

Splits follow the source where it defines them. Where it does not, a seeded,
deterministic split by dialogue id is made (:func:`seeded_split`):

=================  ==========================================================
dataset            splits
=================  ==========================================================
redial             train/valid: 90%/10% of iEvaLM's ``valid_data_processed``
                   dialogues (the ReDial training file is not available
                   offline; published ReDial numbers train on ~10k dialogues);
                   test: ``test_data_processed`` (the official test set)
opendialkg         the source's train/valid/test processed files
opendialkg_books   80/10/10% of ``dialog_Books.jsonl`` dialogues
inspired           train/valid: 80%/20% of ``dev.jsonl``; test: ``test.jsonl``
gorecdial          CRSLab's ``{train,valid,test}_data.json`` when present
tgredial           CRSLab's ``{train,valid,test}_data.json`` when present
=================  ==========================================================
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from crsdata.io import read_json, read_jsonl, require
from crsdata.paths import DataError, data_root
from crsdata.schema import SPLITS, Dialogue, RecSample, Role, Turn

SPLIT_SEED = 20181203  # ReDial's NeurIPS date; any fixed value would do.
PROCESSED_KEYS = ("dialog_id", "context", "rec", "resp")


def norm_name(name: str) -> str:
    """Collapse runs of white space (``"The Shining  (1980)"`` -> ``"The Shining (1980)"``)."""
    return " ".join(str(name).split())


def seeded_split(ids: Iterable[str], fractions: tuple[float, ...], seed: int = SPLIT_SEED) -> list[set[str]]:
    """Split ids deterministically into parts of the given fractions.

    >>> [sorted(p) for p in seeded_split(["a", "b", "c", "d"], (0.5, 0.5))]
    [['b', 'd'], ['a', 'c']]
    """
    ordered = sorted(set(ids))
    random.Random(seed).shuffle(ordered)
    parts, start = [], 0
    for i, frac in enumerate(fractions):
        end = len(ordered) if i == len(fractions) - 1 else start + round(frac * len(ordered))
        parts.append(set(ordered[start:end]))
        start = end
    return parts


def _mention_pattern(name: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(name) + r"(?!\w)", re.IGNORECASE)


def _attribute(mentions: Iterable[str], texts: list[str]) -> list[list[str]]:
    """Give each mention to the first utterance naming it as a whole word (else the last context one)."""
    out: list[list[str]] = [[] for _ in texts]
    fallback = max(0, len(texts) - 2)
    for name in mentions:
        pat = _mention_pattern(name)
        idx = next((i for i, t in enumerate(texts) if pat.search(t)), fallback)
        out[idx].append(name)
    return out


def _from_processed(dataset: str, split: str, path: Path, item_names: frozenset[str], keep: set[str] | None = None) -> list[Dialogue]:
    """Rebuild dialogues from iEvaLM's per-turn files (one recommender turn per line).

    The longest record of a dialogue gives its utterances; roles alternate
    backwards from the response (a recommender turn). A leading empty
    placeholder utterance is dropped. Each record's ``rec`` becomes the items
    of its recommender turn; other mentions (the cumulative ``entity`` field)
    are attributed to the first utterance naming them.
    """
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for lineno, rec in read_jsonl(path, dataset, PROCESSED_KEYS):
        if not isinstance(rec["context"], list) or not isinstance(rec["rec"], list):
            raise DataError(f"{path}:{lineno}: 'context' and 'rec' must be lists")
        did = str(rec["dialog_id"])
        if keep is None or did in keep:
            groups[did].append(rec)
    dialogues = []
    for did, recs in groups.items():
        recs.sort(key=lambda r: len(r["context"]))
        longest = recs[-1]
        texts = [norm_name(u) for u in longest["context"]] + [norm_name(longest["resp"])]
        n = len(texts)
        targets = {len(r["context"]): tuple(dict.fromkeys(norm_name(x) for x in r["rec"])) for r in recs}
        mentions = dict.fromkeys(norm_name(e) for r in recs for e in r.get("entity", []))
        per_turn = _attribute(mentions, texts)
        turns: list[Turn] = []
        rec_indices: list[int] = []
        for i, text in enumerate(texts):
            role: Role = "recommender" if (n - 1 - i) % 2 == 0 else "user"
            named = per_turn[i]
            items = targets.get(i) if role == "recommender" and i in targets else None
            if items is None:
                items = tuple(m for m in named if m in item_names)
            entities = tuple(m for m in named if m not in items and m not in item_names)
            if not text and i == 0:
                continue
            if i in targets and items:
                rec_indices.append(len(turns))
            turns.append(Turn(role, text, items, entities))
        dialogues.append(Dialogue(dataset, split, did, tuple(turns), {"rec_turns": tuple(rec_indices)}))
    return dialogues


def _from_turn_lists(
    dataset: str,
    split: str,
    convs: Iterable[tuple[str, list[dict[str, Any]]]],
    role_of: Callable[[str], Role],
    fields: tuple[str, str, str, str],
    source: Path,
) -> list[Dialogue]:
    """Dialogue-level formats: each conversation is a list of utterance dicts.

    Args:
        fields: Keys for (role, text, items, entities).
    """
    k_role, k_text, k_items, k_ents = fields
    out = []
    for did, utts in convs:
        turns = []
        for j, u in enumerate(utts):
            if not isinstance(u, dict) or k_role not in u or k_text not in u:
                raise DataError(f"{source}: dialogue {did} utterance {j} lacks '{k_role}' or '{k_text}'")
            text = u[k_text]
            text = " ".join(text) if isinstance(text, list) else str(text)
            items = tuple(dict.fromkeys(norm_name(x) for x in u.get(k_items, []) or []))
            ents = tuple(dict.fromkeys(norm_name(x) for x in u.get(k_ents, []) or [] if norm_name(x) not in items))
            turns.append(Turn(role_of(str(u[k_role])), norm_name(text), items, ents))
        out.append(Dialogue(dataset, split, did, tuple(turns)))
    return out


def _role_map(mapping: dict[str, Role]) -> Callable[[str], Role]:
    def role_of(raw: str) -> Role:
        try:
            return mapping[raw.lower()]
        except KeyError:
            raise DataError(f"unknown speaker role {raw!r}; expected one of {sorted(mapping)}") from None

    return role_of


SEEKER_ROLES = _role_map({"seeker": "user", "user": "user", "recommender": "recommender", "assistant": "recommender"})


# ---- item names per dataset (what counts as an item) -------------------------------------


def item_names(dataset: str, root: str) -> frozenset[str]:
    """Names of the items (movies/books) of a dataset, normalised (cached until a file changes)."""
    folder = Path(root) / DATASET_DIRS.get(dataset, dataset)
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())) if folder.is_dir() else ()
    return _item_names(dataset, root, stamp)


@lru_cache(maxsize=16)
def _item_names(dataset: str, root: str, stamp: tuple[tuple[str, int], ...]) -> frozenset[str]:
    base = Path(root) / dataset
    if dataset in ("redial", "opendialkg"):
        info = read_json(base / "id2info.json", dataset)
        return frozenset(norm_name(v["name"]) for v in info.values() if v.get("name"))
    if dataset == "opendialkg_books":
        names: set[str] = set()
        for _, conv in read_jsonl(base.parent / "opendialkg" / "dialog_Books.jsonl", dataset):
            names.update(norm_name(x) for u in conv for x in u.get("item", []))
        return frozenset(names)
    if dataset == "inspired":
        names = set()
        for fname in ("dev.jsonl", "test.jsonl"):
            for _, conv in read_jsonl(base / fname, dataset):
                names.update(norm_name(x) for u in conv for x in u.get("movie", []))
        return frozenset(names)
    if dataset in ("gorecdial", "tgredial"):
        ent2id = read_json(base / "entity2id.json", dataset)
        id2ent = {v: k for k, v in ent2id.items()}
        ids = read_json(base / "movie_ids.json", dataset)
        return frozenset(norm_name(id2ent[i]) for i in ids if i in id2ent)
    raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


# ---- per-dataset loaders ------------------------------------------------------------------


def _load_redial(root: Path, split: str) -> list[Dialogue]:
    base = root / "redial"
    names = item_names("redial", str(root))
    if split == "test":
        return _from_processed("redial", split, base / "test_data_processed.jsonl", names)
    path = base / "valid_data_processed.jsonl"
    ids = [str(r["dialog_id"]) for _, r in read_jsonl(path, "redial", PROCESSED_KEYS)]
    train, valid = seeded_split(ids, (0.9, 0.1))
    return _from_processed("redial", split, path, names, train if split == "train" else valid)


def _load_opendialkg(root: Path, split: str) -> list[Dialogue]:
    names = item_names("opendialkg", str(root))
    return _from_processed("opendialkg", split, root / "opendialkg" / f"{split}_data_processed.jsonl", names)


def _load_books(root: Path, split: str) -> list[Dialogue]:
    path = root / "opendialkg" / "dialog_Books.jsonl"
    convs = [(str(lineno), conv) for lineno, conv in read_jsonl(path, "opendialkg_books")]
    parts: dict[str, set[str]] = dict(zip(SPLITS, seeded_split([c[0] for c in convs], (0.8, 0.1, 0.1)), strict=True))
    keep = parts[split]
    return _from_turn_lists(
        "opendialkg_books", split, (c for c in convs if c[0] in keep), SEEKER_ROLES, ("role", "text", "item", "entity"), path
    )


def _load_inspired(root: Path, split: str) -> list[Dialogue]:
    base = root / "inspired"
    roles = _role_map({"seeker": "user", "recommender": "recommender"})
    fields = ("role", "text", "movie", "entity_name")
    if split == "test":
        path = base / "test.jsonl"
        convs = [(f"test-{n}", c) for n, c in read_jsonl(path, "inspired")]
        return _from_turn_lists("inspired", split, convs, roles, fields, path)
    path = base / "dev.jsonl"
    convs = [(f"dev-{n}", c) for n, c in read_jsonl(path, "inspired")]
    train, valid = seeded_split([c[0] for c in convs], (0.8, 0.2))
    keep = train if split == "train" else valid
    return _from_turn_lists("inspired", split, [c for c in convs if c[0] in keep], roles, fields, path)


def _load_crslab(dataset: str, conv_key: str, items_key: str) -> Callable[[Path, str], list[Dialogue]]:
    """CRSLab's preprocessed format (GoRecDial: ``dialog``/``movies``; TG-ReDial: ``messages``/``movie``)."""

    def load(root: Path, split: str) -> list[Dialogue]:
        path = root / dataset / f"{split}_data.json"
        data = read_json(path, dataset)
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of conversations")
        convs = []
        for n, conv in enumerate(data):
            if not isinstance(conv, dict) or conv_key not in conv:
                raise DataError(f"{path}: conversation {n} lacks '{conv_key}'")
            convs.append((str(conv.get("conv_id", n)), conv[conv_key]))
        return _from_turn_lists(dataset, split, convs, SEEKER_ROLES, ("role", "text", items_key, "entity"), path)

    return load


DATASETS: dict[str, Callable[[Path, str], list[Dialogue]]] = {
    "redial": _load_redial,
    "opendialkg": _load_opendialkg,
    "opendialkg_books": _load_books,
    "inspired": _load_inspired,
    "gorecdial": _load_crslab("gorecdial", "dialog", "movies"),
    "tgredial": _load_crslab("tgredial", "messages", "movie"),
}
DATASET_DIRS = {"opendialkg_books": "opendialkg"}
DEFAULT_DATASET = "redial"


def available_datasets(root: str | Path | None = None) -> list[str]:
    """Datasets whose folder exists under the data root."""
    base = data_root(root)
    return [d for d in DATASETS if (base / DATASET_DIRS.get(d, d)).is_dir()]


def load_dialogues(dataset: str, split: str, root: str | Path | None = None) -> list[Dialogue]:
    """Load one split of one dataset as :class:`Dialogue` records.

    Args:
        dataset: A key of :data:`DATASETS`.
        split: ``train``, ``valid`` or ``test``.
        root: Data root; defaults to :func:`crsdata.paths.data_root`.

    Raises:
        DataError: Unknown dataset or split, missing or malformed file.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    base = data_root(root)
    if not (base / DATASET_DIRS.get(dataset, dataset)).is_dir():
        require(base / DATASET_DIRS.get(dataset, dataset) / "(any file)", dataset)
    return DATASETS[dataset](base, split)


def load_samples(dataset: str, split: str, root: str | Path | None = None, limit: int | None = None) -> list[RecSample]:
    """Recommender-turn samples of a split, in file order (CRSLab's turn-level convention)."""
    out: list[RecSample] = []
    for dlg in load_dialogues(dataset, split, root):
        for sample in dlg.rec_samples():
            out.append(sample)
            if limit is not None and len(out) >= limit:
                return out
    return out
