"""The reply adapter: a LoRA adapter of the local LLM, fine-tuned to write the response stage's reply from
the compact reply prompt (:func:`agent.respond.reply_prompt`). ``python -m rl.sft`` builds it per dataset
under ``$LLMCRS_HOME/replies/<dataset>/`` (``adapter_model.safetensors``, ``adapter_config.json`` and
``reply.json``, which records the base model's and the adapter's sha256, the losses and the command); weights
are built, not committed, and the package ships none.

The adapter is attached to the very model the manager reads (:func:`agent.llm.attach_reply_adapter`): one
model in memory, its adapter layers on only while a tuned reply is generated, so that every decision
reads the base model and the shipped decision heads stay valid. A model it was not trained on gets no
adapter (the response stage then writes as before: the grounded sentence and one sentence of the LLM).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from agent.llm import LocalHFChatModel, attach_reply_adapter
from crsdata.paths import SetupError, home_dir

ADAPTER_FILE = "adapter_model.safetensors"
COMMAND = "python -m rl.responses --dataset {dataset} && python -m rl.sft --config rl/configs/reply_{dataset}.yaml"


class ReplyAdapterError(SetupError):
    """A reply adapter is corrupt; the message names the command that retrains it."""


def reply_adapter_dir(dataset: str) -> Path | None:
    """Where the reply adapter of a dataset is: ``$LLMCRS_HOME/replies/<dataset>`` (what ``python -m rl.sft``
    writes); ``None`` if none was built."""
    folder = home_dir() / "replies" / dataset
    return folder if (folder / "reply.json").is_file() else None


def adapter_sha256(folder: Path) -> str:
    """The sha256 of a folder's adapter weights."""
    return hashlib.sha256((folder / ADAPTER_FILE).read_bytes()).hexdigest()


def use_reply_adapter(model: Any, dataset: str) -> bool:
    """Attach the dataset's reply adapter to ``model`` when one was trained on its weights; whether it has one.
    ``LLMCRS_REPLY_ADAPTER=off`` attaches none (the run-time switch is ``Context.tuned_reply``).

    Raises:
        ReplyAdapterError: The adapter's weights do not match the sha256 recorded when it was trained.
    """
    if not isinstance(model, LocalHFChatModel) or os.environ.get("LLMCRS_REPLY_ADAPTER", "on") == "off":
        return False
    if model.has_reply_adapter:
        return True
    folder = reply_adapter_dir(dataset)
    if folder is None:
        return False
    meta = json.loads((folder / "reply.json").read_text())
    if meta.get("model_sha256") != model.weights_sha256:
        return False  # trained on another model: its adapter would not fit
    if adapter_sha256(folder) != meta.get("sha256"):
        raise ReplyAdapterError(
            f"{folder / ADAPTER_FILE} does not match its sha256 in reply.json; retrain: {COMMAND.format(dataset=dataset)}"
        )
    attach_reply_adapter(model.hf_model, folder)
    return True
