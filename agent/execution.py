"""Stage 3's parts: the chosen expert run in process or at its endpoint (:func:`run_chosen`), the LLM itself
as the expert under w/o E (:func:`llm_as_expert`), rankings of blended experts fused, a failed expert
replaced by another local candidate, and a recommendation kept to what the user asked (:func:`as_asked`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
from langchain_core.messages import HumanMessage
from langchain_core.tools import BaseTool

import prompts
from agent.context import Context
from agent.decide import can_score, decide
from agent.dialogue import dialogue_text
from agent.respond import generate
from agent.state import LLMCall, State
from tools.explanation import catalog_phrase, strongest_reason
from tools.fusion import fuse_rankings
from tools.invoke import invoke_expert
from tools.preferences import Preferences, empty, honour, unmet, wish_phrase
from tools.subtasks import RECOMMENDATION, goal_text

if TYPE_CHECKING:
    from agent.resources import Resources

LLM_EXPERT = "llm"


def run_chosen(expert: str | None, state: State, ctx: Context, res: Resources) -> tuple[dict[str, Any], LLMCall, str | None]:
    """The chosen expert's output (the LLM's under w/o E), fused with the blended experts' rankings; when it
    fails, another local candidate's (:func:`instead_of`) or a clear "unavailable". Returns the output, the
    stage's record and the expert that answered."""
    call = state["subtask"]
    assert call is not None
    if expert == LLM_EXPERT:
        output, rec = llm_as_expert(state, ctx, res)
    elif expert is None or (tool := res.tool(expert)) is None:
        output = {"text": f"No expert can do {call['name']} here.", "error": f"no expert for {call['name']!r} (asked for {expert!r})"}
        rec = LLMCall(stage="execution", method="tool", parsed=expert, fallback=True, error=output["error"])
    else:
        try:
            output = run_expert(tool, state, ctx)
            rec = LLMCall(stage="execution", method="tool", parsed=expert, fallback=False)
        except Exception as exc:  # a dead endpoint or a bug in an expert must not end the conversation
            msg = f"{type(exc).__name__}: {exc}"
            output, rec, expert = instead_of(expert, msg, state, ctx, res)
        if state.get("blend") and not rec.get("fallback") and output.get("items"):
            output, rec = blended(output, expert, state, ctx, res, rec)
    return output, rec, expert


def as_asked(output: dict[str, Any], state: State, res: Resources) -> dict[str, Any]:
    """A recommendation without what the conversation offered or named (:func:`not_again`), ranked by what
    the user asked for, with its reason (:func:`as_wished`); any other output as it is."""
    call = state["subtask"]
    assert call is not None
    if call["name"] != RECOMMENDATION or not output.get("items"):
        return output
    dialogue = call["args"].get("dialogue context", "")
    output = not_again(output, state, res, dialogue)
    if output["items"] and not output.get("error"):
        output = as_wished(output, state.get("preferences") or empty(), res, dialogue)
    return output


def run_expert(tool: BaseTool, state: State, ctx: Context) -> dict[str, Any]:
    """The expert's normalised output on the turn's sub-task call."""
    call = state["subtask"]
    assert call is not None
    return invoke_expert(tool, call["args"], ctx.top_k, list(state.get("asked") or []))


def llm_as_expert(state: State, ctx: Context, res: Resources) -> tuple[dict[str, Any], LLMCall]:
    """w/o E: the LLM does the sub-task itself. For recommendation it ranks the top-50 items by
    sentence-embedding similarity to the dialogue (scored by the LLM where it can score options)."""
    from tools.env import item_index

    start = time.perf_counter()
    call = state["subtask"]
    assert call is not None
    _, text = dialogue_text(state, ctx)
    goal = goal_text(call)
    if call["name"] == RECOMMENDATION:
        exclude = set(res.env.mentioned_items(call["args"].get("dialogue context", text)))
        cands = [n for n, _ in item_index(res.env).search(text, k=50, exclude=exclude)]
        listing = "Candidates:\n" + "\n".join(cands) + "\nAnswer with the best candidate's exact name."
        prompt = prompts.render("llm_expert", {"Sub-Task Goal": goal, "Dialogue Context": text, "Candidates": listing})
        if can_score(res.model):
            with torch.no_grad():
                lp = res.model.choice_logprobs([HumanMessage(prompt)], cands)  # type: ignore[attr-defined]
            order = torch.argsort(lp, descending=True).tolist()
            ranked = [cands[i] for i in order]
            rec = LLMCall(
                stage="execution",
                method="constrained",
                prompt=prompt,
                options=cands,
                logprobs=[float(x) for x in lp],
                parsed=ranked[0],
                fallback=False,
            )
        else:
            choice, rec, _ = decide(res.model, "execution", prompt, cands, "item", lambda: cands[0])
            ranked = [choice] + [c for c in cands if c != choice]
        out = {"items": ranked, "text": f"{ranked[0]}" if ranked else "nothing found"}
    else:
        prompt = prompts.render(
            "llm_expert", {"Sub-Task Goal": goal, "Dialogue Context": text, "Candidates": "Answer in one or two sentences."}
        )
        answer = generate(res, prompt, ctx, "")
        out = {"text": answer or "I am not sure."}
        rec = LLMCall(stage="execution", method="generated", prompt=prompt, completion=answer, fallback=not answer)
    rec["seconds"] = time.perf_counter() - start
    return out, rec


def not_again(output: dict[str, Any], state: State, res: Resources, dialogue: str) -> dict[str, Any]:
    """A recommendation without what this conversation already offered or named: the experts drop the
    items the entity linker finds, and this also drops titles it skips ("300", a lower-case
    "caddyshack", a ten-word title; :meth:`tools.linking.EntityLinker.named`)."""
    items = [str(i) for i in output["items"]]
    gone = set(state.get("offered") or []) | res.env.linker.named(dialogue, items)
    fresh = [i for i in items if i not in gone]
    return output if len(fresh) == len(items) else with_items(output, fresh)


def as_wished(output: dict[str, Any], prefs: Preferences, res: Resources, dialogue: str) -> dict[str, Any]:
    """The ranking re-tiered by the conversation's preferences (:func:`tools.preferences.honour`: the
    fused or fallback ranking too, and what left the dialogue window), with its reason: the asked-for
    wish the top item meets ("a 1990s drama movie, as you asked"), else the strongest grounded reason;
    what the catalog says of it (``about``: "a crime movie directed by Michael Mann"); and, when no item meets every wish, what was relaxed (``relaxed``: "No 1990s drama movie with Tom
    Hanks is left; ...")."""
    items = honour(res.env, prefs, [str(i) for i in output["items"]])
    if not items:
        return {**output, "items": [], "text": "Nothing I know fits everything you asked for.", "error": "every item is ruled out"}
    out = with_items(output, items) if items != output["items"] else dict(output)
    top = items[0]
    met = wish_phrase(res.env, prefs, top)
    if unmet(res.env, prefs, top):
        wanted = wish_phrase(res.env, prefs)
        out["relaxed"] = f"I have no {wanted[wanted.index(' ') + 1 :]} left that you have not seen."
    if met:
        out["wish"] = met
    reason = f"{top} is {met}, as you asked." if met else strongest_reason(res.env, top, dialogue)
    about = catalog_phrase(res.env, top)
    return {**out, **({"reason": reason} if reason else {}), **({"about": about} if about else {})}


def with_items(output: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``output`` with another ranking, its text the first three items (the old text if none is left)."""
    return {**output, "items": items, "text": ", ".join(items[:3]) or output["text"]}


def blended(
    output: dict[str, Any], expert: str, state: State, ctx: Context, res: Resources, rec: LLMCall
) -> tuple[dict[str, Any], LLMCall]:
    """The chosen expert's ranking fused with the other blended experts' by their shares
    (:func:`tools.fusion.fuse_rankings`). A blended expert that fails is left out and named in ``rec``."""
    shares = state.get("blend") or {}
    rankings, weights, used, failed = [list(output["items"])], [shares.get(expert, 0.0)], {expert: shares.get(expert, 0.0)}, []
    for name, share in shares.items():
        if name == expert:
            continue
        if (tool := res.tool(name)) is None:
            failed.append(f"{name}: not offered")
            continue
        try:
            items = run_expert(tool, state, ctx).get("items") or []
        except Exception as exc:  # noqa: BLE001 - as for the chosen expert: one failing expert must not end the turn
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        rankings.append([str(i) for i in items])
        weights.append(share)
        used[name] = share
    fused = fuse_rankings(rankings, weights)[: max(len(output["items"]), ctx.top_k)]
    rec = LLMCall(**rec, blend=used)
    if failed:
        rec["error"] = "; ".join(failed)
    return with_items(output, fused), rec


def instead_of(failed: str, why: str, state: State, ctx: Context, res: Resources) -> tuple[dict[str, Any], LLMCall, str]:
    """After ``failed`` raised: the first local candidate of the same sub-task that answers, with a notice
    for the user; else a clear "unavailable" output. The trajectory records both."""
    for alt in state.get("candidates") or []:
        tool = res.tool(alt) if alt != failed else None
        if tool is None or (tool.metadata or {}).get("endpoint"):  # only a local expert is a fallback
            continue
        try:
            output = run_expert(tool, state, ctx)
        except Exception:  # noqa: BLE001, S112 - this one fails too: try the next
            continue
        notice = f"(The {failed} expert is unavailable right now; {alt} answered instead.)"
        rec = LLMCall(stage="execution", method="tool", parsed=alt, fallback=True, error=f"{failed}: {why}; answered by {alt}")
        return {**output, "notice": notice}, rec, alt
    output = {"text": f"Sorry, the {failed} expert is unavailable right now.", "error": why}
    return output, LLMCall(stage="execution", method="tool", parsed=failed, fallback=True, error=why), failed
