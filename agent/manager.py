"""The trained manager: the local LLM's decisions (sub-task detection, then model matching) made by a
small decision head on the LLM's hidden states, as TRL's value head or transformers'
``*ForSequenceClassification`` do.

Why a head and not prompted choices: a 135M model cannot pick sub-tasks zero-shot from the paper's
600-token prompt (it chose elicitation on 30 of 30 scripted turns), and full-model backprop costs
1.8-2.8 s per example here. The head reads the LLM's hidden states of a compact decision prompt
(``prompts/decision.txt``: the last utterances only), pooled three ways (last token and mean of the
final layer, mean of a middle layer), plus the dialogue-state features the graph computes anyway
(what the entity linker found, what the rule would do). The LLM runs once per turn for both
decisions (about 0.1-0.3 s here); the head costs microseconds. Training (``python -m rl.train``)
reads features cached once per example, so an SFT or RLPF update costs milliseconds.

With a GPU or a larger model the same head trains on that model's hidden states: the model is a
configuration value (``--model`` of ``python -m rl.decisions``), the code is the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypedDict, runtime_checkable

import torch
from torch import nn

import prompts
from agent.heuristics import QUESTION_ABOUT, WHY, heuristic_subtask, last_user
from agent.llm import EMBEDDED_NAME
from crsdata.paths import SetupError, home_dir
from crsdata.schema import Role
from tools.detail import attribute_from_text
from tools.dialogue import format_dialogue
from tools.elicitation import attributes_asked_in
from tools.env import ExpertEnv
from tools.subtasks import SUBTASKS

DECISION_TURNS = 3
WORDS_PER_TURN = 30
MAX_TOKENS = 80
SUBTASK_NAMES = list(SUBTASKS)
FEATURE_VERSION = 2
SHIPPED_PACKAGE = "agent.managers"


@runtime_checkable
class HiddenStateModel(Protocol):
    """A chat model that can give pooled hidden states of texts (the embedded and any local HF model)."""

    model_name: str

    def hidden_features(self, texts: Sequence[str], batch_size: int = 8, max_tokens: int = MAX_TOKENS) -> torch.Tensor:
        """``[len(texts), dim]`` pooled hidden states."""
        ...


# ---- what the head reads ---------------------------------------------------------------------------


def decision_text(dialogue: list[tuple[Role, str]], category: str) -> str:
    """The compact decision prompt: the last utterances, each cut to a few dozen words.

    A long utterance keeps its opening and its end (where a request or a reason usually is: "Not A, B,
    C, ..., none of those. I'm in the mood for a comedy."), not only its opening.

    >>> decision_text([("user", "hi there"), ("recommender", "Hello! What do you like?")], "movie").splitlines()[1:3]
    ['User: hi there', 'Assistant: Hello! What do you like?']
    >>> decision_text([("user", " ".join(map(str, range(40))))], "movie").splitlines()[1]
    'User: 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 ... 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39'
    """
    recent = [(r, _cut(t)) for r, t in dialogue[-DECISION_TURNS:]]
    return prompts.render("decision", {"Category": category, "Dialogue Context": format_dialogue(recent)})


def _cut(text: str) -> str:
    words = text.split()
    if len(words) <= WORDS_PER_TURN:
        return " ".join(words)
    half = WORDS_PER_TURN // 2
    return " ".join([*words[:half], "...", *words[-half:]])


STATE_FEATURES = (
    "rule:elicitation", "rule:recommendation", "rule:explanation", "rule:detail", "why", "question", "attribute", "ends_with_?",
    "items_in_last_user", "items_by_user", "liked_entities", "turns", "assistant_named_item", "assistant_asked", "had_result",
    "last_user_likes", "attributes_asked",
)  # fmt: skip
# Features are appended, never reordered: a head trained before a feature existed reads the first
# ``state_dim`` of them (ManagerHead.forward), so its decisions do not change.


def state_features(dialogue: list[tuple[Role, str]], results: list[dict[str, Any]], env: ExpertEnv) -> list[float]:
    """The dialogue-state features (:data:`STATE_FEATURES`): what the linker found and what the rule would
    choose; whether the last user turn says what the user likes (a rejection with a reason, an answer)
    or only what they do not ("Not A, B. I don't like them."); how many attributes were asked so far."""
    import math

    text = last_user(dialogue)
    rule = heuristic_subtask(dialogue, results, env)
    user_items = env.linker.link(" ".join(t for r, t in dialogue if r == "user")).items
    prefs = env.linker.link_dialogue([t for r, t in dialogue if r == "user"])
    last_rec = next((t for r, t in reversed(dialogue) if r == "recommender"), "")
    return [
        *[float(rule == n) for n in SUBTASK_NAMES],
        float(bool(WHY.search(text))),
        float(bool(QUESTION_ABOUT.search(text))),
        float(attribute_from_text(text) is not None),
        float(text.strip().endswith("?")),
        min(len(env.linker.link(text).items), 3) / 3,
        math.log1p(len(user_items)),
        math.log1p(len(prefs.liked_entities())),
        math.log1p(len(dialogue)),
        float(bool(env.linker.link(last_rec).items)) if last_rec else 0.0,
        float(last_rec.strip().endswith("?")),
        float(bool(results)),
        float(bool(env.linker.link_dialogue([text]).liked_entities())),
        math.log1p(len(attributes_asked_in(dialogue))),
    ]


# ---- the head --------------------------------------------------------------------------------------


class ManagerHead(nn.Module):
    """A shared trunk over standardised features, a detection head (the sub-tasks) and a matching head
    (the recommendation experts it was trained with)."""

    mean: torch.Tensor
    std: torch.Tensor
    det_bias: torch.Tensor
    match_bias: torch.Tensor
    blend_temperature: torch.Tensor

    def __init__(self, llm_dim: int, state_dim: int, experts: Sequence[str], hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.experts = list(experts)
        # the transformers Trainer (TRL's trainer base) reads model.config; a plain config keeps it happy
        from transformers import PretrainedConfig

        self.config = PretrainedConfig()
        self.spec = {"llm_dim": llm_dim, "state_dim": state_dim, "experts": self.experts, "hidden": hidden, "dropout": dropout}
        self.register_buffer("mean", torch.zeros(llm_dim))
        self.register_buffer("std", torch.ones(llm_dim))
        self.register_buffer("det_bias", torch.zeros(len(SUBTASK_NAMES)))  # calibrated on validation (rl.manager)
        self.register_buffer("blend_temperature", torch.zeros(()))  # 0: one expert; calibrated on validation (rl.manager)
        # +MATCH_FIX on one expert when the learned matching did not beat it out of fold (rl.manager.guard_matching)
        self.register_buffer("match_bias", torch.zeros(max(1, len(self.experts))))
        self.trunk = nn.Sequential(nn.Dropout(dropout), nn.Linear(llm_dim + state_dim, hidden), nn.GELU(), nn.Dropout(dropout))
        self.detect = nn.Linear(hidden, len(SUBTASK_NAMES))
        self.match = nn.Linear(hidden, max(1, len(self.experts)))

    @property
    def fixed_expert(self) -> str | None:
        """The expert the matching guard fixed (``match_bias`` holds :data:`MATCH_FIX` on it), else ``None``."""
        if not self.experts or float(self.match_bias.max()) < MATCH_FIX:
            return None
        return self.experts[int(self.match_bias.argmax())]

    def fit_scaler(self, llm: torch.Tensor) -> None:
        """Standardise the LLM features with the training set's mean and deviation."""
        self.mean.copy_(llm.float().mean(0))
        self.std.copy_(llm.float().std(0).clamp_min(1e-4))

    def forward(self, llm: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Detection and matching logits (``state`` may hold features added after this head was trained)."""
        state = state[..., : self.spec["state_dim"]]
        h = self.trunk(torch.cat([(llm.float() - self.mean) / self.std, state.float()], dim=-1))
        return self.detect(h) + self.det_bias, self.match(h) + self.match_bias


MIN_BLEND_WEIGHT = 0.05  # an expert below this share of the blend is not run
MATCH_FIX = 20.0  # the matching offset that fixes one expert (its share e^-20 from any other: never blended away)


def blend_weights(logprobs: torch.Tensor, temperature: float) -> torch.Tensor:
    """The share of each expert in the recommendation: the matching distribution sharpened by
    ``temperature`` (``softmax(log p / T)``, i.e. ``p ** (1 / T)`` renormalised), shares below
    :data:`MIN_BLEND_WEIGHT` dropped. ``temperature`` 0 is the paper's matching: the argmax expert alone.

    >>> [round(w, 3) for w in blend_weights(torch.log(torch.tensor([0.7, 0.28, 0.02])), 1.0).tolist()]
    [0.714, 0.286, 0.0]
    >>> blend_weights(torch.log(torch.tensor([0.7, 0.28, 0.02])), 0.0).tolist()
    [1.0, 0.0, 0.0]
    """
    if temperature <= 0:
        return torch.nn.functional.one_hot(logprobs.argmax(-1), logprobs.shape[-1]).float()
    w = torch.softmax(logprobs / temperature, -1)
    w = torch.where(w >= MIN_BLEND_WEIGHT, w, torch.zeros_like(w))
    return w / w.sum(-1, keepdim=True)


# ---- the trained artifact ---------------------------------------------------------------------------


def head_slug(model_name: str) -> str:
    """The folder name of a model's trained heads: a local folder's own name, a hub id with ``--`` for ``/``.

    >>> head_slug("/models/llama-3-8b-instruct"), head_slug("HuggingFaceTB/SmolLM2-360M-Instruct")
    ('llama-3-8b-instruct', 'HuggingFaceTB--SmolLM2-360M-Instruct')
    """
    local = Path(model_name).expanduser()
    name = local.name if local.is_absolute() or model_name.startswith((".", "~")) or local.exists() else model_name
    return name.strip("/").replace("/", "--") or "model"


def train_command(dataset: str, model: str | None = None) -> str:
    """The commands that make a trained manager for ``dataset`` on ``model`` (a local model spec; ``None``
    for the embedded default)."""
    flag = f" --model {model}" if model and model != EMBEDDED_NAME else ""
    return (f"python -m tools.train all --dataset {dataset} && python -m rl.decisions --dataset {dataset}{flag} && "
            f"python -m rl.train --config rl/configs/manager_{dataset}.yaml{flag}")  # fmt: skip


def save_manager(head: ManagerHead, folder: Path, meta: dict[str, Any]) -> Path:
    """Write ``manager.pt`` (fp16 weights) and ``manager.json`` (config, metadata, sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "manager.pt"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in head.state_dict().items()}, weights)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    (folder / "manager.json").write_text(json.dumps({**meta, "config": head.spec, "sha256": sha}, indent=1) + "\n")
    return folder


class ManagerError(SetupError):
    """A trained manager is corrupt or does not fit the model; the message names the retrain command."""


def load_manager(folder: Path) -> tuple[ManagerHead, dict[str, Any]]:
    """Load a trained manager, checking its checksum."""
    meta = json.loads((folder / "manager.json").read_text())
    data = (folder / "manager.pt").read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        raise ManagerError(
            f"{folder / 'manager.pt'} does not match its sha256 in manager.json; retrain: {train_command(meta.get('dataset', '<dataset>'))}"
        )
    head = ManagerHead(**meta["config"])
    state = torch.load(folder / "manager.pt", weights_only=True)
    # buffers added after a head may have been saved, at their neutral zero: blend_temperature (before
    # blending: one expert per turn) and match_bias (before the matching guard: matching as learned)
    for name in ("blend_temperature", "match_bias"):
        state.setdefault(name, torch.zeros_like(getattr(head, name)))
    head.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    head.eval()
    return head, meta


def manager_dir(dataset: str, model_name: str = EMBEDDED_NAME) -> Path | None:
    """Where the graph looks for the trained manager of a dataset on a model: under
    ``$LLMCRS_MANAGER_DIR``, then ``$LLMCRS_HOME/managers`` (what ``python -m rl.train`` writes), then the
    package (the embedded model's heads), the folder ``<dataset>/<model>`` (:func:`head_slug`) before
    ``<dataset>`` itself (the embedded model's); ``None`` if none exists. Whether the head found fits the
    model is :func:`check_head`'s question."""
    bases = [Path(b) for b in (os.environ.get("LLMCRS_MANAGER_DIR"), str(home_dir() / "managers")) if b]
    bases.append(Path(str(resources.files(SHIPPED_PACKAGE))))
    for base in bases:
        for folder in (base / dataset / head_slug(model_name), base / dataset):
            if (folder / "manager.json").is_file():
                return folder
    return None


def check_head(meta: dict[str, Any], folder: Path, model_name: str, sha256: str) -> None:
    """Refuse a head trained on another model's hidden states (by name and, where both are known, by the
    weights' sha256), naming the command that trains the right one.

    Raises:
        ManagerError: The head does not fit the model.
    """
    name_ok = head_slug(str(meta.get("model"))) == head_slug(model_name)
    sha_ok = not (meta.get("model_sha256") and sha256) or meta["model_sha256"] == sha256
    if not (name_ok and sha_ok):
        trained_on = f"{meta.get('model')!r}" + (f" (weights {str(meta.get('model_sha256'))[:12]})" if meta.get("model_sha256") else "")
        raise ManagerError(
            f"the trained manager at {folder} reads the hidden states of {trained_on}, not of {model_name!r} (weights {sha256[:12] or 'unknown'}); "
            f"train one for this model with `{train_command(str(meta.get('dataset', '<dataset>')), model_name)}`, "
            'or decide with the prompted manager (`--manager prompt`, manager="prompt")'
        )


class TurnFeatures(TypedDict):
    """What the trained manager reads of one turn, computed once at detection and carried in the
    graph's state to matching (``State.decision_features``), never in a shared attribute: concurrent
    runs of one graph each carry their own.

    Attributes:
        key: The dialogue and results they were computed from.
        llm: The LLM's pooled hidden state of the decision prompt.
        state: The dialogue-state features (:data:`STATE_FEATURES`).
        text: The decision prompt.
    """

    key: str
    llm: list[float]
    state: list[float]
    text: str


class TrainedManager:
    """The decision head with the LLM whose hidden states it reads. It keeps no per-turn state: a turn's
    features (:class:`TurnFeatures`) travel with the turn."""

    def __init__(self, head: ManagerHead, meta: dict[str, Any], model: HiddenStateModel, env: ExpertEnv) -> None:
        self.head, self.meta, self.model, self.env = head, meta, model, env

    @staticmethod
    def key(dialogue: list[tuple[Role, str]], results: list[dict[str, Any]]) -> str:
        """What identifies a turn's features: its dialogue and earlier results."""
        return json.dumps([dialogue, results], sort_keys=True, default=str)

    def features(self, dialogue: list[tuple[Role, str]], results: list[dict[str, Any]]) -> TurnFeatures:
        """The turn's features: one LLM pass over the decision prompt, and the state features."""
        text = decision_text(dialogue, self.env.category)
        llm = self.model.hidden_features([text], max_tokens=MAX_TOKENS)
        state = state_features(dialogue, results, self.env)
        return TurnFeatures(key=self.key(dialogue, results), llm=[float(x) for x in llm[0]], state=state, text=text)

    def distributions(
        self, dialogue: list[tuple[Role, str]], results: list[dict[str, Any]], features: TurnFeatures | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, str]:
        """Log-probabilities over the sub-tasks and over the head's experts, and the decision text.

        Args:
            dialogue: The dialogue so far.
            results: The earlier turns' results.
            features: This turn's features when detection computed them (matching reuses them, with no
                second LLM pass); computed here when ``None`` or of another turn.

        The head itself (microseconds) runs on every call, so a head updated in between (RLPF) is
        never answered from stale outputs."""
        if features is None or features["key"] != self.key(dialogue, results):
            features = self.features(dialogue, results)
        with torch.no_grad():
            det, match = self.head(torch.tensor([features["llm"]]), torch.tensor([features["state"]]))
        return torch.log_softmax(det[0], -1), torch.log_softmax(match[0], -1), features["text"]


def require_hidden_states(model: Any) -> None:
    """Refuse a model that cannot serve the trained manager (a remote endpoint has no hidden states).

    Raises:
        ManagerError: Names the alternatives.
    """
    from agent.llm import is_local

    if not isinstance(model, HiddenStateModel) and not is_local(model):
        what = model if isinstance(model, str) else type(model).__name__
        raise ManagerError(
            f"the trained manager reads a local model's hidden states, and {what} gives none: decide with the prompted manager "
            '(`--manager prompt`, manager="prompt") or the rule (`--manager rule`), or serve a local model (a folder or hf:<id>)'
        )


def trained_manager(dataset: str, model: Any, env: ExpertEnv) -> TrainedManager | None:
    """The dataset's trained manager for ``model``; ``None`` with a warning when the embedded model has no
    head for the dataset (the graph then uses the rule).

    Raises:
        ManagerError: The model has no hidden states, or the head found was trained on another model
            (the message names the command that trains the right one, and ``--manager prompt``).
    """
    require_hidden_states(model)
    name, sha = model.model_name, str(getattr(model, "weights_sha256", ""))
    folder = manager_dir(dataset, name)
    if folder is None and name == EMBEDDED_NAME:
        warnings.warn(
            f"no trained manager for {dataset}: sub-tasks and experts are chosen by the rule; train one with `{train_command(dataset)}`",
            stacklevel=2,
        )
        return None
    if folder is None:
        raise ManagerError(
            f"no trained manager for {dataset} on {name!r}; train one with `{train_command(dataset, name)}`, "
            'or decide with the prompted manager (`--manager prompt`, manager="prompt")'
        )
    head, meta = load_manager(folder)
    check_head(meta, folder, name, sha)
    return TrainedManager(head, meta, model, env)
