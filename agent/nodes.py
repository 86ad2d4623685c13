"""The four stages of LLMCRS, one small function each, over the one state.

0. :func:`admit_input` — what the input boundary refused ends the turn before any model runs.
1. :func:`detect_subtask` — the manager picks the sub-task (:mod:`agent.deciders`: the trained head, the
   LLM on Table 2's prompt #1, or the rule), then :mod:`agent.guards` keeps it to what the user said.
2. :func:`match_expert` — the manager picks an expert from the candidates' descriptions (prompt #2); a
   trained manager may also blend the recommenders by its matching distribution.
3. :func:`execute_subtask` — the chosen expert runs (in process or at a remote endpoint), and the
   blended ones, whose rankings are fused with the chosen one's (:mod:`agent.execution`).
4. :func:`generate_response` — the LLM answers from the dialogue and the summary (prompt #3), grounded
   (:mod:`agent.respond`).
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.messages import RemoveMessage
from langgraph.config import get_stream_writer

from agent.boundary import REJECTED, rejected
from agent.context import Context
from agent.dialogue import dialogue_text
from agent.execution import LLM_EXPERT, as_asked, run_chosen
from agent.guards import answer_key, as_stated, not_a_repeat, with_filled_args
from agent.heuristics import last_user
from agent.resources import Resources
from agent.respond import EMPTY_TURN, close_turn, summary_of, template_response, write_reply
from agent.state import LLMCall, State
from agent.text import dialogue_of
from tools.preferences import Preferences, empty, fold
from tools.subtasks import ELICITATION, RECOMMENDATION, make_call

# ---- 0. the input boundary ---------------------------------------------------------------------


PER_TURN: dict[str, Any] = {
    "subtask": None,
    "candidates": [],
    "expert": None,
    "blend": None,
    "expert_output": None,
    "summary": None,
    "response": None,
    "decision_features": None,
}


def admit_input(state: State) -> dict[str, Any]:
    """Refuse what the boundary marked (:mod:`agent.boundary`) or an input with no new message, before
    any model runs; the refused messages are removed, so the thread is left as it was."""
    messages = state.get("messages", [])
    bad = rejected(messages)
    if bad:
        why = "; ".join(str(m.additional_kwargs[REJECTED]) for m in bad)
    elif not messages or messages[-1].id == state.get("answered"):
        why = "no new message under 'messages'; send {'messages': [{'role': 'user', 'content': '...'}]}"
    else:
        return {"error": None}
    rec = LLMCall(stage="admission", method="refused", fallback=True, error=why, seconds=0.0)
    return {**PER_TURN, "messages": [RemoveMessage(id=m.id) for m in bad if m.id], "error": f"input refused: {why}", "trajectory": [rec]}


def route_after_admission(state: State) -> str:
    """A refused input ends the turn; otherwise detection."""
    return "end" if state.get("error") else "detect"


# ---- 1. sub-task detection ---------------------------------------------------------------------


def listen(state: State, res: Resources) -> Preferences:
    """The preferences after this turn's new messages (the last answer, which the previous turn could not
    read, and what came after it), folded onto what the conversation stated before
    (:func:`tools.preferences.fold`)."""
    prefs = state.get("preferences") or empty()
    messages = state.get("messages", [])
    ids = [m.id for m in messages]
    start = ids.index(state.get("answered")) if state.get("answered") in ids else 0
    for role, text in dialogue_of(messages[start:]):
        prefs = fold(res.env, prefs, role, text)
    return prefs


def detect_subtask(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 1: choose the sub-task and resolve its arguments. Resets the per-turn fields."""
    start = time.perf_counter()
    prefs = listen(state, res)
    fresh: dict[str, Any] = {**PER_TURN, "error": None, "preferences": prefs}
    dialogue, text = dialogue_text(state, ctx)
    if not last_user(dialogue).strip():
        rec = LLMCall(stage="detection", method="skipped", fallback=False, error="empty dialogue", seconds=0.0)
        return {**fresh, "subtask": None, "error": "empty dialogue: no user message to answer", "trajectory": [rec]}
    decision = res.manager.detect(state, dialogue, text)
    rec = decision.rec
    name = as_stated(decision.name, state.get("preferences"), prefs, rec)
    name, args = not_a_repeat(name, decision.distribution, dialogue, state.get("results", []), res.env, rec)
    call = make_call(name, with_filled_args(args, decision.args, res.env))
    candidates = [LLM_EXPERT] if not res.ablations.experts else [t.name for t in res.candidates(name)]
    if not res.ablations.management:  # w/o M: no dynamic matching either, the first (default) expert
        candidates = candidates[:1]
    rec["seconds"], rec["preferences"] = time.perf_counter() - start, prefs
    return {**fresh, "decision_features": decision.features, "subtask": call, "candidates": candidates, "trajectory": [rec]}


def route_after_detection(state: State) -> str:
    """Empty turn -> respond; several candidate experts -> match; otherwise straight to execution."""
    if state.get("error"):
        return "respond"
    return "match" if len(state.get("candidates", [])) > 1 else "execute"


# ---- 2. model matching -------------------------------------------------------------------------


def match_expert(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 2: the manager picks one expert by the candidates' descriptions (and may blend recommenders)."""
    start = time.perf_counter()
    tools = [t for name in state["candidates"] if (t := res.tool(name)) is not None]
    expert, rec, blend = res.manager.match(state, tools)
    rec["seconds"] = time.perf_counter() - start
    return {"expert": expert, "blend": blend, "trajectory": [*state.get("trajectory", []), rec]}


# ---- 3. sub-task execution -----------------------------------------------------------------------


def execute_subtask(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 3: run the chosen expert (or the only candidate). An expert failure becomes a clear output."""
    traj = list(state.get("trajectory", []))
    call = state["subtask"]
    assert call is not None
    expert = state.get("expert")
    if expert is None:
        expert = state["candidates"][0] if state.get("candidates") else None
        traj.append(LLMCall(stage="matching", method="skipped", parsed=expert, fallback=False, seconds=0.0))
    start = time.perf_counter()
    output, rec, expert = run_chosen(expert, state, ctx, res)
    output = as_asked(output, state, res)
    rec["seconds"] = time.perf_counter() - start
    kept = {k: (v[:10] if k == "items" and isinstance(v, list) else v) for k, v in output.items()}
    shown = [str(output["items"][0])] if call["name"] == RECOMMENDATION and output.get("items") else []
    return {
        "expert": expert,
        "expert_output": output,
        "trajectory": [*traj, rec],
        "results": [{"subtask": call["name"], "expert": expert, "output": kept, "args": answer_key(call["args"])}],
        "offered": shown,
        "asked": [str(output["attribute"])] if call["name"] == ELICITATION and output.get("attribute") else [],
    }


# ---- 4. response generation ----------------------------------------------------------------------


def generate_response(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 4: the LLM writes the answer; an empty, failed or ungrounded answer falls back to the template."""
    start = time.perf_counter()
    traj = list(state.get("trajectory", []))
    if state.get("error") or not state.get("subtask"):
        rec = LLMCall(stage="response", method="skipped", completion=EMPTY_TURN, fallback=True, error=str(state.get("error")), seconds=0.0)
        return {**close_turn(state, EMPTY_TURN), "response": EMPTY_TURN, "summary": None, "trajectory": [*traj, rec]}
    if not ctx.generate:  # recommendation-only evaluation: the text is not scored, the LLM is not run
        answer = template_response(state)
        rec = LLMCall(stage="response", method="skipped", completion=answer, fallback=False)
        summary = summary_of(state, res)
    else:
        answer, summary, rec = write_reply(state, ctx, res, get_stream_writer())
    rec["seconds"] = time.perf_counter() - start
    return {**close_turn(state, answer), "response": answer, "summary": summary, "trajectory": [*traj, rec]}
