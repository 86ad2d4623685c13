"""One loader API over every corpus, normalised into :class:`~crsdata.schema.Dialogue`.

Each dataset is a spec in :mod:`crsdata.registry` (one module in ``crsdata/datasets/``); this module
holds what the specs share: the per-turn (iEvaLM) and dialogue-level (CRSLab, INSPIRED) formats,
seeded splits where the source defines none (:func:`seeded_split`), and the dataset-level API
(:func:`load_dialogues`, :func:`load_samples`, :func:`item_names`).
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
from crsdata.registry import dataset_spec, datasets
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


def from_processed(dataset: str, split: str, path: Path, item_names: frozenset[str], keep: set[str] | None = None) -> list[Dialogue]:
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


def from_turn_lists(
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


def role_map(mapping: dict[str, Role]) -> Callable[[str], Role]:
    def role_of(raw: str) -> Role:
        try:
            return mapping[raw.lower()]
        except KeyError:
            raise DataError(f"unknown speaker role {raw!r}; expected one of {sorted(mapping)}") from None

    return role_of


SEEKER_ROLES = role_map({"seeker": "user", "user": "user", "recommender": "recommender", "assistant": "recommender"})


def jsonl_splits(dataset: str) -> Callable[[Path, str], list[Dialogue]]:
    """A loader of llmcrs's own format, for a new dataset: ``{split}.jsonl`` in its folder, one dialogue per
    line, ``{"id": "d1", "turns": [{"role": "user", "text": "...", "items": [...], "entities": [...]}, ...]}``
    (roles ``user``/``seeker`` and ``recommender``/``assistant``; ``items`` are catalog names)."""

    def load(folder: Path, split: str) -> list[Dialogue]:
        path = folder / f"{split}.jsonl"
        convs = []
        for lineno, rec in read_jsonl(path, dataset, ("turns",)):
            if not isinstance(rec["turns"], list):
                raise DataError(f"{path}:{lineno}: 'turns' must be a list")
            convs.append((str(rec.get("id", lineno)), rec["turns"]))
        return from_turn_lists(dataset, split, convs, SEEKER_ROLES, ("role", "text", "items", "entities"), path)

    return load


# ---- dataset-level API (the datasets are specs in crsdata.registry) -------------------------


def item_names(dataset: str, root: str) -> frozenset[str]:
    """Names of the items (movies/books) of a dataset, normalised (cached until a file changes)."""
    folder = dataset_spec(dataset).path(Path(root))
    stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())) if folder.is_dir() else ()
    return _item_names(dataset, root, stamp)


@lru_cache(maxsize=16)
def _item_names(dataset: str, root: str, stamp: tuple[tuple[str, int], ...]) -> frozenset[str]:  # noqa: ARG001 (the cache key)
    return dataset_spec(dataset).names(Path(root))


def processed_names(folder: Path) -> frozenset[str]:
    """Item names of iEvaLM's ``id2info.json`` (ReDial, OpenDialKG)."""
    info = read_json(folder / "id2info.json", folder.name)
    return frozenset(norm_name(v["name"]) for v in info.values() if v.get("name"))


DEFAULT_DATASET = "redial"


def available_datasets(root: str | Path | None = None) -> list[str]:
    """Datasets whose folder exists under the data root."""
    base = data_root(root)
    return [name for name, spec in datasets().items() if spec.path(base).is_dir()]


def load_dialogues(dataset: str, split: str, root: str | Path | None = None) -> list[Dialogue]:
    """Load one split of one dataset as :class:`Dialogue` records.

    Args:
        dataset: A registered dataset (:func:`crsdata.registry.datasets`).
        split: ``train``, ``valid`` or ``test``.
        root: Data root; defaults to :func:`crsdata.paths.data_root`.

    Raises:
        DataError: Unknown dataset or split, missing or malformed file.
    """
    spec = dataset_spec(dataset)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    folder = spec.path(data_root(root))
    if not folder.is_dir():
        require(folder / "(any file)", dataset)
    return spec.load(folder, split)


def load_samples(dataset: str, split: str, root: str | Path | None = None, limit: int | None = None) -> list[RecSample]:
    """Recommender-turn samples of a split, in file order (CRSLab's turn-level convention)."""
    out: list[RecSample] = []
    for dlg in load_dialogues(dataset, split, root):
        for sample in dlg.rec_samples():
            out.append(sample)
            if limit is not None and len(out) >= limit:
                return out
    return out
