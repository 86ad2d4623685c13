"""A manager decision: one option out of an allowed list, taken by the LLM.

With a model that can score options (:class:`agent.llm.LocalHFChatModel`) the decision is
constrained: each option's log-likelihood after the prompt and a JSON prefix, normalised over
the options; the best wins. With any other chat model the answer is free text, parsed and
validated; an invalid answer is retried once with the error shown, then a deterministic fallback
is used. Every path is recorded (and counted by the evaluation).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from agent.parsing import parse_choice
from agent.state import LLMCall


def can_score(model: BaseChatModel) -> bool:
    """Whether the model can score a closed set of options."""
    return callable(getattr(model, "choice_logprobs", None))


def pick(logprobs: torch.Tensor, sample: bool) -> int:
    """Index of the chosen option: drawn from the distribution during RLPF rollouts, else the most likely."""
    return int(torch.multinomial(logprobs.exp(), 1)) if sample else int(torch.argmax(logprobs))


def decide(
    model: BaseChatModel, stage: str, prompt: str, options: list[str], key: str, fallback: Callable[[], str]
) -> tuple[str, LLMCall, dict[str, Any] | None]:
    """Choose one of ``options``.

    Args:
        model: The manager LLM.
        stage: Trajectory stage name (``detection``, ``matching``, ...).
        prompt: The rendered prompt.
        options: Allowed answers.
        key: The JSON field the answer goes in (``name`` for sub-tasks, ``id`` for experts).
        fallback: The deterministic choice when the LLM gives nothing valid.

    Returns:
        The choice, its trajectory record, and the JSON object the model wrote (free text only).
    """
    start = time.perf_counter()
    messages: list[BaseMessage] = [HumanMessage(prompt)]
    if can_score(model):
        prefix = '{"' + key + '": "'
        with torch.no_grad():
            logprobs = model.choice_logprobs(messages, options, prefix=prefix, suffix='"}')  # type: ignore[attr-defined]
        sample = bool(getattr(model, "sample_choices", False))
        index = pick(logprobs, sample)
        best = options[index]
        rec = LLMCall(
            stage=stage, method="constrained", prompt=prompt, prefix=prefix, completion=f'{best}"}}', options=list(options),
            logprobs=[round(float(x), 6) for x in logprobs], parsed=best, fallback=False, seconds=time.perf_counter() - start,
        )  # fmt: skip
        rec["sampled"] = sample
        return best, rec, None
    attempts: list[dict[str, str]] = []
    choice, obj = None, None
    for _ in range(2):  # the answer, then one retry with the error shown
        try:
            text = str(model.invoke(messages).content)
        except Exception as exc:  # a dead endpoint must not lose the turn
            attempts.append({"completion": "", "error": f"{type(exc).__name__}: {exc}"})
            break
        choice, error, obj = parse_choice(text, options, key)
        attempts.append({"completion": text, "error": error or ""})
        if choice is not None:
            break
        messages = [
            *messages,
            AIMessage(text),
            HumanMessage(f'That answer is invalid: {error}. Reply with JSON only: {{"{key}": <one of {", ".join(options)}>}}'),
        ]
    used_fallback = choice is None
    if choice is None:
        choice = fallback()
    rec = LLMCall(
        stage=stage, method="parsed", prompt=prompt, completion=attempts[-1]["completion"] if attempts else "", options=list(options),
        parsed=choice, fallback=used_fallback, attempts=attempts, seconds=time.perf_counter() - start,
    )  # fmt: skip
    if used_fallback:
        rec["error"] = attempts[-1]["error"] if attempts else "no answer"
    return choice, rec, obj
