"""KBRD-style recommender: a relational GCN over the dataset's knowledge graph (torch_geometric
``RGCNConv`` with basis decomposition), self-attention pooling over the entities the dialogue
mentions, and a dot-product score for every item (Chen et al., EMNLP 2019).

Relation filter: CRSLab keeps only relations seen at least 1000 times, which on these KGs leaves
almost nothing; here every relation with at least ``min_relation_count`` edges (default 1) is
kept, each with a reverse relation, so ReDial keeps genre/star/director/writer and OpenDialKG
its six relations.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from itertools import islice
from typing import Any

import torch
from langchain_core.tools import BaseTool
from torch import nn
from torch_geometric.nn import RGCNConv

from crsdata.io import read_json
from crsdata.loaders import norm_name
from crsdata.paths import DataError
from tools.env import ExpertEnv
from tools.learned import (
    TrainConfig,
    context_rows,
    evaluate_ranker,
    floor_evidence,
    learned_tool,
    load_checkpoint,
    load_state,
    save_checkpoint,
    seed_all,
    split_samples,
    train_loop,
)
from tools.preferences import stated_first

NAME = "kbrd"


def require_kg(env: ExpertEnv) -> None:
    """Raise :class:`DataError` when the dataset has no knowledge graph (e.g. INSPIRED)."""
    if not (env.root / env.dataset / "kg.json").is_file():
        raise DataError(f"{env.dataset} has no knowledge graph (kg.json), so KBRD cannot train on it")


def load_kg(env: ExpertEnv, min_relation_count: int = 1) -> tuple[dict[str, int], torch.Tensor, torch.Tensor, int]:
    """Entity ids, edge index (with reverse edges), edge types and the number of relation types.

    Raises:
        DataError: The dataset has no knowledge graph (e.g. INSPIRED).
    """
    require_kg(env)
    folder = env.root / env.dataset
    ent2id = {norm_name(k): int(v) for k, v in read_json(folder / "entity2id.json", env.dataset).items()}
    kg = read_json(folder / "kg.json", env.dataset)
    triples = [(int(h), int(r), int(t)) for h, edges in kg.items() for r, t in edges]
    counts = Counter(r for _, r, _ in triples)
    kept = sorted(r for r, c in counts.items() if c >= min_relation_count)
    rel_ix = {r: i for i, r in enumerate(kept)}
    src, dst, typ = [], [], []
    for h, r, t in triples:
        if r in rel_ix:
            src += [h, t]
            dst += [t, h]
            typ += [rel_ix[r], rel_ix[r] + len(kept)]
    return ent2id, torch.tensor([src, dst]), torch.tensor(typ), 2 * len(kept)


class KBRD(nn.Module):
    """R-GCN entity encoder + self-attentive user representation + item scores."""

    def __init__(
        self,
        n_entities: int,
        n_relations: int,
        dim: int,
        num_bases: int,
        item_entities: torch.Tensor,
        edge_index: torch.Tensor,
        edge_type: torch.Tensor,
    ) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_entities, dim)
        nn.init.normal_(self.emb.weight, std=0.1)
        self.conv = RGCNConv(dim, dim, n_relations, num_bases=num_bases)
        self.attn = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.item_bias = nn.Parameter(torch.zeros(len(item_entities)))
        self.register_buffer("item_entities", item_entities)
        self.register_buffer("edge_index", edge_index)
        self.register_buffer("edge_type", edge_type)

    def entities(self) -> torch.Tensor:
        """Entity representations after one relational graph convolution (plus a residual)."""
        return torch.relu(self.conv(self.emb.weight, self.edge_index, self.edge_type)) + self.emb.weight

    def forward(self, entity_lists: list[list[int]], ent: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(batch, n_items)``; a dialogue with no linked entity gets the item biases only.
        ``ent`` reuses precomputed entity representations (inference)."""
        ent = self.entities() if ent is None else ent
        width = max(1, max((len(e) for e in entity_lists), default=1))
        idx = torch.zeros(len(entity_lists), width, dtype=torch.long)
        mask = torch.zeros(len(entity_lists), width, dtype=torch.bool)
        for i, e in enumerate(entity_lists):
            if e:
                idx[i, : len(e)] = torch.tensor(e)
                mask[i, : len(e)] = True
        h = ent[idx]
        w = self.attn(h).squeeze(-1).masked_fill(~mask, -1e9)
        user = (torch.softmax(w, dim=-1).unsqueeze(-1) * h).sum(1) * mask.any(1, keepdim=True)
        return user @ ent[self.item_entities].T + self.item_bias  # type: ignore[index]


def _vocab(env: ExpertEnv, ent2id: dict[str, int]) -> tuple[list[str], dict[str, int]]:
    names = [n for n in env.ranked_by_popularity if n in ent2id]
    return names, {n: i for i, n in enumerate(names)}


def build(env: ExpertEnv, dim: int, num_bases: int, min_relation_count: int) -> tuple[KBRD, dict[str, int], list[str], dict[str, int]]:
    """An untrained model with its entity and item vocabularies."""
    ent2id, edge_index, edge_type, n_rel = load_kg(env, min_relation_count)
    names, item_ix = _vocab(env, ent2id)
    model = KBRD(max(ent2id.values()) + 1, n_rel, dim, num_bases, torch.tensor([ent2id[n] for n in names]), edge_index, edge_type)
    return model, ent2id, names, item_ix


class KBRDRanker:
    """Ranks items for a dialogue text with a trained (or training) model."""

    def __init__(self, env: ExpertEnv, model: KBRD, ent2id: dict[str, int], names: list[str]) -> None:
        self.env, self.model, self.ent2id, self.names = env, model, ent2id, names
        self._ent: torch.Tensor | None = None

    def refresh(self) -> None:
        """Recompute the entity representations (after the weights changed)."""
        with torch.no_grad():
            self._ent = self.model.entities()

    def rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The ``top_k`` items for a dialogue, after the user's stated likes and dislikes."""
        return stated_first(self.env, dialogue_context, lambda n: self.model_rank(dialogue_context, n), top_k)

    def model_rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The model's own ``top_k``, without the items the dialogue names."""
        m = self.env.linker.link(dialogue_context)
        ents = [self.ent2id[e] for e in (*m.items, *m.genres, *m.people) if e in self.ent2id and e not in m.disliked]
        if self._ent is None:
            self.refresh()
        with torch.no_grad():
            scores = self.model([ents], self._ent)[0]
        exclude = set(m.items)
        order = torch.argsort(scores, descending=True).tolist()
        return list(islice((self.names[i] for i in order if self.names[i] not in exclude), top_k))


def train(env: ExpertEnv, cfg: TrainConfig, num_bases: int = 8, min_relation_count: int = 1) -> dict[str, Any]:
    """Train on the training split, select on validation HIT@10, save the checkpoint."""
    seed_all(cfg.seed)
    model, ent2id, names, item_ix = build(env, cfg.dim, num_bases, min_relation_count)
    rows = context_rows(env, split_samples(env, "train"), ent2id, item_ix)[: cfg.max_train_rows]
    valid = split_samples(env, "valid")[:300]
    ranker = KBRDRanker(env, model, ent2id, names)

    def validate() -> float:
        ranker.refresh()
        return evaluate_ranker(ranker.rank, valid)["hit@10"]

    result = train_loop(model, rows, validate, cfg, f"kbrd/{env.dataset}")
    ranker.refresh()
    result["floor"] = floor_evidence(env, ranker.rank)
    config = {**cfg.as_dict(), "num_bases": num_bases, "min_relation_count": min_relation_count, "train_rows": len(rows)}
    save_checkpoint(env.dataset, NAME, model.state_dict(), config, result)
    return result


def load_ranker(env: ExpertEnv) -> tuple[KBRDRanker, dict[str, Any]]:
    """The trained ranker and its metrics.

    Raises:
        DataError: The dataset has no knowledge graph, so there is no KBRD to load.
        CheckpointMissing: Not trained yet; names the train command.
    """
    require_kg(env)
    state, config, metrics = load_checkpoint(env.dataset, NAME)
    model, ent2id, names, _ = build(env, config["dim"], config["num_bases"], config["min_relation_count"])
    load_state(model, state, env.dataset, NAME)
    model.eval()
    ranker = KBRDRanker(env, model, ent2id, names)
    ranker.refresh()
    return ranker, metrics


def ranker(env: ExpertEnv) -> Callable[[str, int], list[str]]:
    """The trained ranking function ``(dialogue_context, top_k) -> items``."""
    return load_ranker(env)[0].rank


def bench_rankers(env: ExpertEnv) -> dict[str, Callable[[str, int], list[str]]]:
    """What ``tools.bench`` scores: the tool's ranking only."""
    return {"": ranker(env)}


DOC = """KBRD recommender: a relational graph convolutional network (R-GCN, basis decomposition) over the
{dataset} knowledge graph of items, genres and people; self-attention pools the entities the dialogue
mentions into a user vector that scores every item. Knowledge-aware: strong when the user names movies,
genres or people; knows only this dataset's items. English. Measured: validation HIT@10 {hit:.3f}.
"""


def make_tool(env: ExpertEnv) -> BaseTool:
    """The trained KBRD expert of ``env``'s dataset as a tool."""
    ranker, metrics = load_ranker(env)
    return learned_tool("kbrd_recommender", ranker.rank, DOC, env, metrics, "Based on what you mentioned: {items}.", NAME)
