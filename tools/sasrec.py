"""SASRec-style sequential recommender over the entities the dialogue has mentioned so far: a small
Transformer encoder reads the sequence of mentioned items, genres and people (in mention order,
with positions) and a final query token scores every item (after Kang & McAuley, ICDM 2018).
It complements KBRD: it learns which mentions lead to which items in real conversations instead of
knowledge-graph relations, and needs no KG (it trains on INSPIRED too). Items-only sequences were
measured first and were much weaker on OpenDialKG, where users mostly name people and genres."""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import Any

import torch
from langchain_core.tools import BaseTool
from torch import nn

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

NAME = "sasrec"
MAX_LEN = 20


class SASRec(nn.Module):
    """Item embeddings + positions -> Transformer encoder -> query token -> item scores."""

    def __init__(self, n_items: int, dim: int, layers: int = 2, heads: int = 2, dropout: float = 0.2, n_tokens: int | None = None) -> None:
        super().__init__()
        n_tokens = n_tokens or n_items  # items first, then other entities
        self.items = nn.Embedding(n_tokens + 2, dim, padding_idx=0)  # 0 pad, n_tokens+1 query token
        self.query = n_tokens + 1
        self.pos = nn.Embedding(MAX_LEN + 1, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.n_items = n_items
        # a learned item bias, initialised by train() to log training popularity: on tiny corpora
        # (INSPIRED: 79 training dialogues) the prior carries most of the signal
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, sequences: list[list[int]]) -> torch.Tensor:
        """Scores ``(batch, n_items)`` given item-index sequences (most recent last)."""
        seqs = [[i + 1 for i in s[-MAX_LEN:]] + [self.query] for s in sequences]
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)  # left-pad so the query token is last
        pos = torch.arange(width).clamp(max=MAX_LEN).unsqueeze(0)
        h = self.encoder(self.items(ids) + self.pos(pos), src_key_padding_mask=ids == 0)
        q = self.norm(h[:, -1])
        return q @ self.items.weight[1 : self.n_items + 1].T + self.item_bias


class SASRecRanker:
    """Ranks items for a dialogue text."""

    def __init__(self, env: ExpertEnv, model: SASRec, names: list[str], tokens: dict[str, int]) -> None:
        self.env, self.model, self.names, self.tokens = env, model, names, tokens

    def rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The ``top_k`` items for a dialogue, after the user's stated likes and dislikes."""
        return stated_first(self.env, dialogue_context, lambda n: self.model_rank(dialogue_context, n), top_k)

    def model_rank(self, dialogue_context: str, top_k: int) -> list[str]:
        """The model's own ``top_k``, without the items the dialogue names."""
        m = self.env.linker.link(dialogue_context)
        seq = [self.tokens[e] for e in m.ordered if e in self.tokens and e not in m.disliked]
        with torch.no_grad():
            scores = self.model([seq])[0]
        exclude = set(m.items)
        order = torch.argsort(scores, descending=True).tolist()
        return list(islice((self.names[i] for i in order if self.names[i] not in exclude), top_k))


def train(env: ExpertEnv, cfg: TrainConfig) -> dict[str, Any]:
    """Train on the training split, select on validation HIT@10, save the checkpoint."""
    seed_all(cfg.seed)
    names, tokens = vocabulary(env)
    item_ix = {n: i for i, n in enumerate(names)}
    model = SASRec(len(names), cfg.dim, n_tokens=len(tokens))
    with torch.no_grad():
        model.item_bias.copy_(torch.log1p(torch.tensor([float(env.popularity.get(n, 0)) for n in names])))
    rows = context_rows(env, split_samples(env, "train"), tokens, item_ix)[: cfg.max_train_rows]
    valid = split_samples(env, "valid")[:300]
    ranker = SASRecRanker(env, model, names, tokens)

    result = train_loop(model, rows, lambda: evaluate_ranker(ranker.rank, valid)["hit@10"], cfg, f"sasrec/{env.dataset}")
    result["floor"] = floor_evidence(env, ranker.rank)
    save_checkpoint(
        env.dataset,
        NAME,
        model.state_dict(),
        {**cfg.as_dict(), "n_items": len(names), "n_tokens": len(tokens), "train_rows": len(rows)},
        result,
    )
    return result


def load_ranker(env: ExpertEnv) -> tuple[SASRecRanker, dict[str, Any]]:
    """The trained ranker and its metrics (raises CheckpointMissing with the train command)."""
    state, config, metrics = load_checkpoint(env.dataset, NAME)
    names, tokens = vocabulary(env)
    model = SASRec(config["n_items"], config["dim"], n_tokens=config["n_tokens"])
    load_state(model, state, env.dataset, NAME)
    model.eval()
    return SASRecRanker(env, model, names, tokens), metrics


def vocabulary(env: ExpertEnv) -> tuple[list[str], dict[str, int]]:
    """Item names (by popularity) and the token index of items, then genres and people."""
    names = list(env.ranked_by_popularity)
    extra = sorted({*env.linker.genres.values(), *env.linker.people.values()} - set(names))
    return names, {n: i for i, n in enumerate([*names, *extra])}


def ranker(env: ExpertEnv) -> Callable[[str, int], list[str]]:
    """The trained ranking function ``(dialogue_context, top_k) -> items``."""
    return load_ranker(env)[0].rank


def bench_rankers(env: ExpertEnv) -> dict[str, Callable[[str, int], list[str]]]:
    """What ``tools.bench`` scores: the tool's ranking only."""
    return {"": ranker(env)}


DOC = """SASRec sequential recommender: a two-layer self-attentive Transformer over the sequence of items,
genres and people the {dataset} dialogue has mentioned so far predicts the item to recommend, learned
from real conversations. Strong when the user names several things; without any it falls back to what
conversations usually open with. English. Measured: validation HIT@10 {hit:.3f}.
"""


def make_tool(env: ExpertEnv) -> BaseTool:
    """The trained SASRec expert of ``env``'s dataset as a tool."""
    ranker, metrics = load_ranker(env)
    return learned_tool("sasrec_recommender", ranker.rank, DOC, env, metrics, "People who talk about these also liked: {items}.", NAME)
