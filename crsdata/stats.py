"""Corpus statistics in the columns of the LLMCRS paper's Table 3."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from crsdata.loaders import item_names, load_dialogues
from crsdata.paths import data_root
from crsdata.schema import SPLITS

TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Word and punctuation tokens (the tokenizer every statistic and metric here uses).

    >>> tokenize("I loved it, thanks!")
    ['I', 'loved', 'it', ',', 'thanks', '!']
    """
    return TOKEN.findall(text)


@dataclass(frozen=True)
class CorpusStats:
    """One row of Table 3, plus the number of recommendation samples."""

    dataset: str
    dialogues: int
    utterances: int
    avg_turns: float
    avg_tokens: float
    items: int
    items_mentioned: int
    rec_samples: int


def corpus_stats(dataset: str, root: str | Path | None = None) -> CorpusStats:
    """Compute Table 3's columns over all splits of a dataset.

    ``items`` is the size of the dataset's item set (metadata or, without
    metadata, every item mentioned); ``items_mentioned`` counts distinct items
    the dialogues mention.
    """
    base = data_root(root)
    dialogues = [d for s in SPLITS for d in load_dialogues(dataset, s, base)]
    utts = [t for d in dialogues for t in d.turns]
    tokens = sum(len(tokenize(t.text)) for t in utts)
    mentioned = {i for t in utts for i in t.items}
    samples = sum(1 for d in dialogues for _ in d.rec_samples())
    return CorpusStats(
        dataset=dataset,
        dialogues=len(dialogues),
        utterances=len(utts),
        avg_turns=len(utts) / max(1, len(dialogues)),
        avg_tokens=tokens / max(1, len(utts)),
        items=len(item_names(dataset, str(base))),
        items_mentioned=len(mentioned),
        rec_samples=samples,
    )
