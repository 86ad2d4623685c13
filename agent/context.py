"""Run-time knobs (LangGraph ``context_schema``): set per invocation, no rebuild needed."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Context:
    """Per-run settings.

    Attributes:
        top_k: Items a recommendation expert returns (50 covers the paper's @50 metrics).
        max_new_tokens: Length limit of the generated response.
        max_context_turns: Dialogue utterances shown to the prompts (most recent).
        prefix_forcing: On local models, start the response with the expert's result and let the
            LLM add one sentence (see :func:`agent.respond.response_prefix`).
        tuned_reply: Whether the reply adapter, where one was trained for the dataset and the model,
            writes the reply from the compact reply prompt (:mod:`agent.reply_adapter`). Off by default:
            the SFT adapter's replies are chattier but state what nothing supports more often than the
            grounded sentence and the base LLM's one sentence (``docs/design.md``).
        generate: Whether the LLM writes the response. ``False`` answers with the template from the
            expert output and skips the LLM (recommendation-only evaluation, where the text is unused).
    """

    top_k: int = 50
    max_new_tokens: int = 32
    max_context_turns: int = 6
    prefix_forcing: bool = True
    tuned_reply: bool = False
    generate: bool = True
