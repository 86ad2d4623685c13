"""The text retriever's query encoder: token embeddings averaged, then one linear map (a static encoder).

A transformer pass over the dialogue costs 15-30 ms a turn on two CPU cores; this encoder costs a tenth of
a millisecond. The item side does not change: items keep the vectors of the fine-tuned transformer
(:mod:`tools.retriever`), and only the query side is trained, against them:

- **distillation**: the cosine between its embedding of a text and the fine-tuned transformer's, over
  unlabelled training text (every prefix of the training dialogues, the catalog's item texts);
- **retrieval**: for the training turns with a target, the cross-entropy of the target among the whole
  catalog (inner products with the fixed item vectors at temperature :data:`TEMPERATURE`), weighted by
  ``ce_weight``.

The epoch kept is the best on validation HIT@10. The embeddings start from the transformer's own input
embeddings, so the untrained encoder is already a bag of the same tokens.

Why our own module: sentence-transformers' ``StaticEmbedding`` and its losses train a symmetric encoder with
in-batch negatives; here the item vectors are fixed and the whole catalog is the softmax, which none of its
losses does, and the model is an ``nn.EmbeddingBag`` and a ``nn.Linear``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

TEMPERATURE = 0.05
MAX_TOKENS = 126  # the transformer's limit (128) without its two special tokens


class StaticQueryEncoder(nn.Module):
    """Mean of the query's token embeddings, a linear map, L2-normalised.

    Args:
        embeddings: ``(vocabulary, dim)`` initial token embeddings (the transformer's input embeddings).
    """

    def __init__(self, embeddings: torch.Tensor) -> None:
        super().__init__()
        vocab, dim = embeddings.shape
        self.tokens = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.proj = nn.Linear(dim, dim)
        with torch.no_grad():
            self.tokens.weight.copy_(embeddings)
            self.proj.weight.copy_(torch.eye(dim))
            self.proj.bias.zero_()

    def forward(self, ids: Sequence[Sequence[int]]) -> torch.Tensor:
        """``(len(ids), dim)`` unit vectors, one per token-id sequence (an empty one embeds as token 0)."""
        seqs = [list(s) or [0] for s in ids]
        flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
        offsets = torch.tensor([0, *np.cumsum([len(s) for s in seqs])[:-1].tolist()], dtype=torch.long)
        return nn.functional.normalize(self.proj(self.tokens(flat, offsets)), dim=-1)


@dataclass
class QueryTraining:
    """What the query encoder learns from.

    Attributes:
        texts: Token ids of the distillation texts.
        teacher: ``(len(texts), dim)`` the transformer's unit embeddings of those texts.
        labelled: ``(token ids, item row)`` of the training turns' targets (rows of ``items``).
        items: ``(catalog, dim)`` the fixed item vectors.
    """

    texts: list[list[int]]
    teacher: torch.Tensor
    labelled: list[tuple[list[int], int]]
    items: torch.Tensor


def train_query_encoder(
    init: torch.Tensor,
    data: QueryTraining,
    validate: Callable[[StaticQueryEncoder], float],
    epochs: int,
    lr: float,
    ce_weight: float,
    seed: int,
    batch_size: int = 128,
) -> tuple[StaticQueryEncoder, list[dict[str, Any]]]:
    """Adam over the distillation texts (and a batch of labelled turns beside each batch), keeping the
    epoch with the best ``validate`` score (validation HIT@10).

    Returns:
        The encoder at its best epoch (epoch 0: untrained) and the history, one row per epoch.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = StaticQueryEncoder(init)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.eval()
    with torch.no_grad():
        best = validate(model)
    history: list[dict[str, Any]] = [{"epoch": 0, "valid_hit@10": best}]
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    for epoch in range(1, epochs + 1):
        model.train()
        order = list(range(len(data.texts)))
        rng.shuffle(order)
        labelled = data.labelled[:]
        rng.shuffle(labelled)
        total = 0.0
        steps = max(1, len(order) // batch_size)
        for b in tqdm(range(steps), desc=f"query encoder epoch {epoch}/{epochs}", leave=False):
            idx = order[b * batch_size : (b + 1) * batch_size]
            loss = (1 - (model([data.texts[i] for i in idx]) * data.teacher[idx]).sum(-1)).mean()
            if ce_weight and labelled:
                start = (b * batch_size // 2) % len(labelled)
                rows = labelled[start : start + batch_size // 2]
                logits = model([ids for ids, _ in rows]) @ data.items.T / TEMPERATURE
                loss = loss + ce_weight * nn.functional.cross_entropy(logits, torch.tensor([t for _, t in rows]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        model.eval()
        with torch.no_grad():
            score = validate(model)
        history.append({"epoch": epoch, "loss": total / steps, "valid_hit@10": score})
        tqdm.write(f"query encoder epoch {epoch}: loss {total / steps:.4f} valid HIT@10 {score:.4f}")
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(best_state)
    return model, history


def token_ids(tokenizer: Any, text: str) -> list[int]:
    """The text's token ids, as the transformer reads them (without its special tokens)."""
    return list(tokenizer(text, add_special_tokens=False, truncation=True, max_length=MAX_TOKENS)["input_ids"])


class StaticQuery:
    """Text -> ``(1, dim)`` unit query vector with a trained :class:`StaticQueryEncoder` and the transformer's tokenizer."""

    def __init__(self, model: StaticQueryEncoder, tokenizer: Any) -> None:
        self.model, self.tokenizer = model.eval(), tokenizer

    def __call__(self, text: str) -> np.ndarray:
        with torch.no_grad():
            return self.model([token_ids(self.tokenizer, text)]).numpy().astype(np.float32)
