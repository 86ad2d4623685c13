"""The four stages of LLMCRS, one small function each, over the one state.

1. :func:`detect_subtask` — the LLM picks the sub-task (Table 2, prompt #1).
2. :func:`match_expert` — the LLM picks an expert from the candidates' descriptions (prompt #2); a
   trained manager may also blend the recommenders by its matching distribution.
3. :func:`execute_subtask` — the chosen expert runs (in process or at a remote endpoint), and the
   blended ones, whose rankings are fused with the chosen one's.
4. :func:`generate_response` — the LLM answers from the dialogue and the summary (prompt #3).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import torch
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage
from langchain_core.tools import BaseTool

import prompts
from agent.boundary import REJECTED, rejected, trim
from agent.context import Context
from agent.decide import can_score, decide, pick
from agent.grounding import anchored, check, without_filler, without_unsupported
from agent.heuristics import WHY, heuristic_subtask, last_user, resolve_args
from agent.llm import LocalHFChatModel
from agent.manager import blend_weights
from agent.resources import Resources
from agent.state import LLMCall, State
from agent.text import clean_response, dialogue_of, without_invented_titles
from crsdata.metrics import TITLE_WITH_YEAR
from crsdata.schema import Role
from tools.detail import attribute_from_text
from tools.dialogue import format_dialogue
from tools.explanation import catalog_phrase, strongest_reason
from tools.fusion import fuse_rankings
from tools.preferences import Preferences, empty, fold, honour, unmet, wish_phrase
from tools.subtasks import ARG_KEYS, DETAIL_SEARCH, ELICITATION, EXPLANATION, RECOMMENDATION, SUBTASKS, goal_text, make_call

EMPTY_TURN = "I didn't catch a message. Tell me what kind of movie or book you are looking for, or one you loved."
LLM_EXPERT = "llm"
REFERS_TO_ITEM = re.compile(r"\b(?:it|its|it's|that one|this one|(?:that|this|the) (?:movie|film|book))\b", re.IGNORECASE)


def description_line(tool: BaseTool) -> str:
    """A tool's description on one line (what the matching prompt lists)."""
    return " ".join(tool.description.split())


def conversation(state: State) -> list[tuple[Role, str]]:
    """The dialogue of the state: the bounded summary of what left the window (as a user line), then the window."""
    earlier = state.get("earlier") or ""
    head: list[tuple[Role, str]] = [("user", f"(earlier) {earlier}")] if earlier else []
    return head + dialogue_of(state.get("messages", []))


#: Where a reply of the graph keeps the words the trained manager reads of it (``AIMessage.response_metadata``).
DECISION_VIEW = "llmcrs_decision_view"


def decision_dialogue(state: State) -> list[tuple[Role, str]]:
    """The dialogue as the trained manager reads it (:func:`conversation`), the graph's own replies as their
    decision view (:func:`decision_view`)."""
    messages = [
        AIMessage(m.response_metadata[DECISION_VIEW]) if m.type == "ai" and DECISION_VIEW in m.response_metadata else m
        for m in state.get("messages", [])
    ]
    return conversation({**state, "messages": messages})


def decision_view(state: State, answer: str) -> str:
    """What the trained manager reads of this turn's reply: a recommendation as the sentence the head was
    trained on (the item, the wish it meets or what was relaxed, without the reason and the catalog facts
    the reply adds), any other reply as said. The grounded additions inform the user, not the next
    decision: "why that one?" after "You might like It (2017). It (2017) and The Shining (1980) are both
    horror movies." is still an explanation."""
    out = state.get("expert_output") or {}
    call = state.get("subtask")
    if call and call["name"] == RECOMMENDATION and out.get("items") and answer.startswith(recommendation_sentence(out)):
        return recommendation_sentence({k: v for k, v in out.items() if k not in ("reason", "about")})
    return answer


def _dialogue_text(state: State, ctx: Context) -> tuple[list[tuple[Role, str]], str]:
    dialogue = conversation(state)
    return dialogue, format_dialogue(dialogue[-ctx.max_context_turns :])


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


def detection_prompt(res: Resources, dialogue_text: str) -> str:
    """Prompt #1 with the active ablations applied (an ablated slot is explicitly emptied)."""
    schema = "\n".join(t.schema_line() for t in SUBTASKS.values()) if res.ablations.schema else ""
    demos = "\n\n".join(res.demos) if res.demos else "(none)"
    return prompts.render(
        "detection",
        {"Sub-Task List": ", ".join(SUBTASKS), "Sub-Task Schema": schema, "Demonstrations": demos, "Dialogue Context": dialogue_text},
    )


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
    dialogue, text = _dialogue_text(state, ctx)
    if not last_user(dialogue).strip():
        rec = LLMCall(stage="detection", method="skipped", fallback=False, error="empty dialogue", seconds=0.0)
        return {**fresh, "subtask": None, "error": "empty dialogue: no user message to answer", "trajectory": [rec]}
    results = state.get("results", [])
    obj, det = None, None
    if not res.ablations.management:
        name = RECOMMENDATION
        rec = LLMCall(stage="detection", method="skipped", parsed=name, fallback=False, error="w/o M: sub-task management off")
    elif res.decider == "trained":
        assert res.trained is not None
        seen = decision_dialogue(state)
        features = res.trained.features(seen, results)
        fresh["decision_features"] = features  # for matching: the turn's own, not a shared cache
        det, _, decision = res.trained.distributions(seen, results, features)
        name, rec = head_choice("detection", decision, list(SUBTASKS), det, bool(getattr(res.model, "sample_choices", False)))
    elif res.decider == "rule":
        name = heuristic_subtask(dialogue, results, res.env)
        rec = LLMCall(stage="detection", method="rule", parsed=name, fallback=False, error="no trained manager: the rule decides")
    else:
        name, rec, obj = decide(
            res.model,
            "detection",
            detection_prompt(res, text),
            list(SUBTASKS),
            "name",
            lambda: heuristic_subtask(dialogue, results, res.env),
        )
    if name == ELICITATION and res.ablations.management and (wish := wished_now(state.get("preferences") or empty(), prefs)):
        # the user just asked for something the recommenders honour: answering with a question ignores it
        name, rec["error"] = RECOMMENDATION, f"the user asked for {wish} this turn: a recommendation, not a question"
    args = resolve_args(name, dialogue, results, res.env, format_dialogue(dialogue))  # experts get the whole dialogue
    if answered_before(results, name, args) and not asks_again(res, last_user(dialogue), name, args):
        # an answer already given, and the user's message does not ask for it again: repeating it
        # word for word says nothing new (a misdetection, e.g. after a rejection), so the manager's next choice
        order = [list(SUBTASKS)[i] for i in torch.argsort(det, descending=True).tolist()] if det is not None else []
        instead = next(
            n for n in [*order, RECOMMENDATION] if not answered_before(results, n, resolve_args(n, dialogue, results, res.env, ""))
        )
        rec["error"] = (
            f"{name} with these arguments was answered earlier in this conversation and the user did not ask again; {instead} instead"
        )
        name = instead
        args = resolve_args(name, dialogue, results, res.env, format_dialogue(dialogue))
    if obj and isinstance(obj.get("args"), dict):  # a capable LLM may fill arguments; keep only valid ones
        named = obj["args"].get("item name")
        if isinstance(named, str) and res.env.linker.resolve_item(named):
            args["item name"] = res.env.linker.resolve_item(named) or args.get("item name", "")
    call = make_call(name, args)
    candidates = [LLM_EXPERT] if not res.ablations.experts else [t.name for t in res.candidates(name)]
    if not res.ablations.management:  # w/o M: no dynamic matching either, the first (default) expert
        candidates = candidates[:1]
    rec["seconds"], rec["preferences"] = time.perf_counter() - start, prefs
    return {**fresh, "subtask": call, "candidates": candidates, "trajectory": [rec]}


def wished_now(before: Preferences, after: Preferences) -> str:
    """What the user's new words asked for that the recommenders honour (a genre, a year range, a person),
    as a phrase, or "" when they asked for nothing new.

    >>> wished_now(empty(), {**empty(), "years": [1990, 1999], "years_said": "the 1990s"})
    'the 1990s'
    >>> wished_now({**empty(), "genres": ["drama"]}, {**empty(), "genres": ["drama"]})
    ''
    """
    said = {
        "genres": ", ".join(after.get("genres") or []),
        "years": after.get("years_said") or "",
        "people": ", ".join(after.get("people") or []),
    }
    return next((said[k] for k in ("genres", "years", "people") if after.get(k) and after.get(k) != before.get(k)), "")  # type: ignore[literal-required]


def answered_before(results: list[dict[str, Any]], name: str, args: dict[str, str]) -> bool:
    """Whether an explanation or a detail with these arguments was already given in this conversation
    (an elicitation never repeats a question, a recommendation never an item: they are never "answered").

    >>> answered_before([{"subtask": "explanation", "args": {"item name": "Heat (1995)"}}], "explanation",
    ...                 {"item name": "Heat (1995)", "dialogue context": "..."})
    True
    """
    if name not in (DETAIL_SEARCH, EXPLANATION):
        return False
    return any(r.get("subtask") == name and r.get("args") == answer_key(args) for r in results)


def asks_again(res: Resources, said: str, name: str, args: dict[str, str]) -> bool:
    """Whether the user's message asks for this answer (sub-task ``name``) again: it names the item, or
    it asks what that sub-task answers about "it": an attribute for a detail ("who wrote it?"; "maybe
    something written by Art Spiegelman?" states a liking), why for an explanation. "What genre is
    it?" after an explanation asks a detail, so repeating the explanation word for word is no answer."""
    if args.get("item name") in res.env.linker.link(said).items:
        return True
    if name == EXPLANATION:
        return bool(WHY.search(said))
    return bool(attribute_from_text(said) and REFERS_TO_ITEM.search(said))


def answer_key(args: dict[str, str]) -> dict[str, str]:
    """What identifies an answer: the item and the attribute asked about (not the dialogue)."""
    return {k: v for k, v in args.items() if k in ("item name", "item attribute")}


def head_choice(stage: str, text: str, options: list[str], logprobs: torch.Tensor, sample: bool) -> tuple[str, LLMCall]:
    """A decision of the trained manager: the argmax of the head's distribution (sampled during RLPF rollouts)."""
    index = pick(logprobs, sample)
    rec = LLMCall(stage=stage, method="head", prompt=text, options=list(options), logprobs=[round(float(x), 6) for x in logprobs],
                  parsed=options[index], sampled=sample, fallback=False)  # fmt: skip
    return options[index], rec


def route_after_detection(state: State) -> str:
    """Empty turn -> respond; several candidate experts -> match; otherwise straight to execution."""
    if state.get("error"):
        return "respond"
    return "match" if len(state.get("candidates", [])) > 1 else "execute"


# ---- 2. model matching -------------------------------------------------------------------------


def matching_prompt(res: Resources, state: State, candidates: list[BaseTool]) -> str:
    """Prompt #2: the sub-task goal and the candidates' [ID, Description] lines."""
    listing = "\n".join(f"[{t.name}, {description_line(t)}]" for t in candidates)
    return prompts.render("matching", {"Sub-Task Goal": goal_text(state["subtask"]), "[ID, Description]": listing})  # type: ignore[arg-type]


def match_expert(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 2: the LLM picks one expert by the candidates' descriptions."""
    start = time.perf_counter()
    tools = [t for name in state["candidates"] if (t := res.tool(name)) is not None]
    ids = [t.name for t in tools]
    known = [i for i in ids if res.trained is not None and i in res.trained.head.experts] if res.decider == "trained" else []
    blend: dict[str, float] | None = None
    if known:
        assert res.trained is not None
        _, match, decision = res.trained.distributions(decision_dialogue(state), state.get("results", []), state.get("decision_features"))
        lp = torch.log_softmax(match[[res.trained.head.experts.index(i) for i in known]], -1)
        sample = bool(getattr(res.model, "sample_choices", False))
        expert, rec = head_choice("matching", decision, known, lp, sample)
        temperature = float(res.trained.head.blend_temperature)
        if temperature > 0 and not sample:  # a sampled choice (RLPF rollouts) is executed alone: it is the action
            shares = {i: round(float(w), 4) for i, w in zip(known, blend_weights(lp, temperature), strict=True) if w > 0}
            if len(shares) > 1:
                rec["blend"] = blend = shares
    elif res.decider == "prompt":
        expert, rec, _ = decide(res.model, "matching", matching_prompt(res, state, tools), ids, "id", lambda: ids[0])
    else:  # the rule, or no candidate the head knows: the first (default) expert
        expert = ids[0]
        rec = LLMCall(stage="matching", method="rule", parsed=expert, fallback=res.decider == "trained", error="the default expert")
    rec["seconds"] = time.perf_counter() - start
    return {"expert": expert, "blend": blend, "trajectory": [*state.get("trajectory", []), rec]}


# ---- 3. sub-task execution -----------------------------------------------------------------------


def _tool_kwargs(tool: BaseTool, args: dict[str, str], ctx: Context, state: State) -> dict[str, Any]:
    kwargs: dict[str, Any] = {ARG_KEYS[a]: v for a, v in args.items() if ARG_KEYS[a] in tool.args}
    if "top_k" in tool.args:
        kwargs["top_k"] = ctx.top_k
    if "asked" in tool.args:  # an elicitor that takes the conversation's memory of its questions
        kwargs["asked"] = list(state.get("asked") or [])
    return kwargs


def _normalise(output: Any) -> dict[str, Any]:
    if isinstance(output, dict):
        out = dict(output)
        out.setdefault("text", ", ".join(map(str, out.get("items", [])[:3])) or json.dumps(output)[:300])
        return out
    if isinstance(output, list):
        return {"items": [str(x) for x in output], "text": ", ".join(map(str, output[:3]))}
    return {"text": str(output)}


def llm_as_expert(state: State, ctx: Context, res: Resources) -> tuple[dict[str, Any], LLMCall]:
    """w/o E: the LLM does the sub-task itself. For recommendation it ranks the top-50 items by
    sentence-embedding similarity to the dialogue (scored by the LLM where it can score options)."""
    from tools.env import item_index

    start = time.perf_counter()
    call = state["subtask"]
    assert call is not None
    _, text = _dialogue_text(state, ctx)
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
        answer = _generate(res, prompt, ctx, "")
        out = {"text": answer or "I am not sure."}
        rec = LLMCall(stage="execution", method="generated", prompt=prompt, completion=answer, fallback=not answer)
    rec["seconds"] = time.perf_counter() - start
    return out, rec


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
    if expert == LLM_EXPERT:
        output, rec = llm_as_expert(state, ctx, res)
    elif expert is None or (tool := res.tool(expert)) is None:
        output = {"text": f"No expert can do {call['name']} here.", "error": f"no expert for {call['name']!r} (asked for {expert!r})"}
        rec = LLMCall(stage="execution", method="tool", parsed=expert, fallback=True, error=output["error"])
    else:
        try:
            output = _run_expert(tool, state, ctx)
            rec = LLMCall(stage="execution", method="tool", parsed=expert, fallback=False)
        except Exception as exc:  # a dead endpoint or a bug in an expert must not end the conversation
            msg = f"{type(exc).__name__}: {exc}"
            output, rec, expert = _instead_of(expert, msg, state, ctx, res)
        if state.get("blend") and not rec.get("fallback") and output.get("items"):
            output, rec = _blended(output, expert, state, ctx, res, rec)
    if call["name"] == RECOMMENDATION and output.get("items"):
        dialogue = call["args"].get("dialogue context", "")
        output = _not_again(output, state, res, dialogue)
        if output["items"] and not output.get("error"):
            output = _as_wished(output, state.get("preferences") or empty(), res, dialogue)
    rec["seconds"] = time.perf_counter() - start
    kept = {k: (v[:10] if k == "items" and isinstance(v, list) else v) for k, v in output.items()}
    shown = [str(output["items"][0])] if call["name"] == RECOMMENDATION and output.get("items") else []
    return {
        "expert": expert,
        "expert_output": output,
        "trajectory": [*traj, rec],
        "results": [
            {
                "subtask": call["name"],
                "expert": expert,
                "output": kept,
                "args": answer_key(call["args"]),
            }
        ],
        "offered": shown,
        "asked": [str(output["attribute"])] if call["name"] == ELICITATION and output.get("attribute") else [],
    }


def _run_expert(tool: BaseTool, state: State, ctx: Context) -> dict[str, Any]:
    """The expert's normalised output."""
    call = state["subtask"]
    assert call is not None
    return _normalise(tool.invoke(_tool_kwargs(tool, call["args"], ctx, state)))


def _not_again(output: dict[str, Any], state: State, res: Resources, dialogue: str) -> dict[str, Any]:
    """A recommendation without what this conversation already offered or named: the experts drop the
    items the entity linker finds, and this also drops titles it skips ("300", a lower-case
    "caddyshack", a ten-word title; :meth:`tools.linking.EntityLinker.named`)."""
    items = [str(i) for i in output["items"]]
    gone = set(state.get("offered") or []) | res.env.linker.named(dialogue, items)
    fresh = [i for i in items if i not in gone]
    return output if len(fresh) == len(items) else _with_items(output, fresh)


def _as_wished(output: dict[str, Any], prefs: Preferences, res: Resources, dialogue: str) -> dict[str, Any]:
    """The ranking re-tiered by the conversation's preferences (:func:`tools.preferences.honour`: the
    fused or fallback ranking too, and what left the dialogue window), with its reason: the asked-for
    wish the top item meets ("a 1990s drama movie, as you asked"), else the strongest grounded reason;
    what the catalog says of it (``about``: "a crime movie directed by Michael Mann"); and, when no item meets every wish, what was relaxed (``relaxed``: "No 1990s drama movie with Tom
    Hanks is left; ...")."""
    items = honour(res.env, prefs, [str(i) for i in output["items"]])
    if not items:
        return {**output, "items": [], "text": "Nothing I know fits everything you asked for.", "error": "every item is ruled out"}
    out = _with_items(output, items) if items != output["items"] else dict(output)
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


def _with_items(output: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """``output`` with another ranking, its text the first three items (the old text if none is left)."""
    return {**output, "items": items, "text": ", ".join(items[:3]) or output["text"]}


def _blended(
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
            items = _run_expert(tool, state, ctx).get("items") or []
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
    return _with_items(output, fused), rec


def _instead_of(failed: str, why: str, state: State, ctx: Context, res: Resources) -> tuple[dict[str, Any], LLMCall, str]:
    """After ``failed`` raised: the first local candidate of the same sub-task that answers, with a notice
    for the user; else a clear "unavailable" output. The trajectory records both."""
    for alt in state.get("candidates") or []:
        tool = res.tool(alt) if alt != failed else None
        if tool is None or (tool.metadata or {}).get("endpoint"):  # only a local expert is a fallback
            continue
        try:
            output = _run_expert(tool, state, ctx)
        except Exception:  # noqa: BLE001, S112 - this one fails too: try the next
            continue
        notice = f"(The {failed} expert is unavailable right now; {alt} answered instead.)"
        rec = LLMCall(stage="execution", method="tool", parsed=alt, fallback=True, error=f"{failed}: {why}; answered by {alt}")
        return {**output, "notice": notice}, rec, alt
    output = {"text": f"Sorry, the {failed} expert is unavailable right now.", "error": why}
    return output, LLMCall(stage="execution", method="tool", parsed=failed, fallback=True, error=why), failed


# ---- 4. response generation ----------------------------------------------------------------------


def summary_of(state: State, res: Resources) -> str:
    """The structured summary: sub-task name, expert model, sub-task output."""
    call, out = state["subtask"], state.get("expert_output") or {}
    assert call is not None
    why = f"\nReason: {out['reason']}" if out.get("reason") else ""
    why += f"\nAbout: {out['about']}" if out.get("about") else ""
    why += f"\nNote: {out['relaxed']}" if out.get("relaxed") else ""
    return f"Sub-task: {call['name']}\nExpert model: {state.get('expert')}\nOutput: {out.get('text', '')}{why}"


def response_prompt(state: State, res: Resources, dialogue_text: str) -> str:
    """Prompt #3; under w/o SG the raw expert output replaces the summary."""
    call, out, expert = state["subtask"], state.get("expert_output") or {}, state.get("expert")
    assert call is not None
    if res.ablations.summary:
        tool = res.tool(expert) if expert else None
        desc = f"{expert}: {description_line(tool).split('. ')[0]}" if tool else str(expert)
        values = {
            "Dialogue Context": dialogue_text,
            "Sub-Task Name": call["name"],
            "ID, Description": desc,
            "Output": str(out.get("text", "")),
        }
    else:
        values = {
            "Dialogue Context": dialogue_text,
            "Sub-Task Name": "",
            "ID, Description": "",
            "Output": json.dumps(out, default=str)[:1500],
        }
    return prompts.render("response", values)


def _generate(res: Resources, prompt: str, ctx: Context, prefix: str) -> str:
    kwargs: dict[str, Any] = {}
    if isinstance(res.model, LocalHFChatModel):
        # after a forced prefix the model adds one sentence: stop at its end or at a new line
        kwargs = {"max_new_tokens": ctx.max_new_tokens, "response_prefix": prefix, "stop": ["\n", ". ", "! ", "? "] if prefix else ["\n\n"]}
    text = str(res.model.invoke([HumanMessage(prompt)], **kwargs).content)
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :]
    return clean_response(text, prefix)


def response_prefix(state: State, res: Resources, ctx: Context) -> str:
    """On a local model with ``ctx.prefix_forcing``, the response starts with what the expert found
    (a prefix-forced format: the recommended item, else the expert's text) and the LLM adds one
    sentence. A 135M model does not stay faithful to the summary otherwise; larger models are
    given no prefix."""
    if not (ctx.prefix_forcing and isinstance(res.model, LocalHFChatModel)):
        return ""
    out = state.get("expert_output") or {}
    call = state.get("subtask")
    if call and call["name"] == RECOMMENDATION and out.get("items"):
        return f"{recommendation_sentence(out)} "
    return f"{out.get('text', '')} ".lstrip()


def template_response(state: State) -> str:
    """The deterministic response from the expert output alone (the fallback)."""
    out = state.get("expert_output") or {}
    call = state.get("subtask")
    if call and call["name"] == RECOMMENDATION and out.get("items"):
        return recommendation_sentence(out)
    return str(out.get("text") or "Sorry, I could not work that out.")


def recommendation_sentence(out: dict[str, Any]) -> str:
    """The recommendation's sentence: "You might like X.", with the wish X meets when the user asked for
    one ("..., a 1990s drama movie, as you asked."), after what was relaxed when no item met every wish;
    else with its grounded reason, else with what the catalog says of it. Every part comes from the
    execution stage's output (catalog facts and KG paths), so the sentence claims nothing unsupported.

    >>> recommendation_sentence({"items": ["Heat (1995)"], "wish": "a 1990s crime movie"})
    'You might like Heat (1995), a 1990s crime movie, as you asked.'
    >>> recommendation_sentence({"items": ["Heat (1995)"], "reason": "Al Pacino stars in both The Godfather (1972) and Heat (1995)."})
    'You might like Heat (1995). Al Pacino stars in both The Godfather (1972) and Heat (1995).'
    >>> recommendation_sentence({"items": ["Heat (1995)"], "about": "a crime movie directed by Michael Mann"})
    'You might like Heat (1995), a crime movie directed by Michael Mann.'
    >>> recommendation_sentence({"items": ["Heat (1995)"]})
    'You might like Heat (1995).'
    >>> recommendation_sentence({"items": ["Heat (1995)"], "wish": "a crime movie", "relaxed": "I have no 1990s crime movie left."})
    'I have no 1990s crime movie left. The closest is Heat (1995), a crime movie.'
    """
    top, wish = str(out["items"][0]), out.get("wish")
    if out.get("relaxed"):
        return f"{out['relaxed']} The closest is {top}" + (f", {wish}." if wish else ".")
    if wish:
        return f"You might like {top}, {wish}, as you asked."
    if out.get("reason"):
        return f"You might like {top}. {out['reason']}"
    return f"You might like {top}, {out['about']}." if out.get("about") else f"You might like {top}."


def generate_response(state: State, ctx: Context, res: Resources) -> dict[str, Any]:
    """Stage 4: the LLM writes the answer; an empty, failed or ungrounded answer falls back to the template."""
    start = time.perf_counter()
    traj = list(state.get("trajectory", []))
    if state.get("error") or not state.get("subtask"):
        rec = LLMCall(stage="response", method="skipped", completion=EMPTY_TURN, fallback=True, error=str(state.get("error")), seconds=0.0)
        return {**_close_turn(state, EMPTY_TURN), "response": EMPTY_TURN, "summary": None, "trajectory": [*traj, rec]}
    if not ctx.generate:  # recommendation-only evaluation: the text is not scored, the LLM is not run
        answer = template_response(state)
        rec = LLMCall(stage="response", method="skipped", completion=answer, fallback=False, seconds=time.perf_counter() - start)
        return {**_close_turn(state, answer), "response": answer, "summary": summary_of(state, res), "trajectory": [*traj, rec]}
    _, text = _dialogue_text(state, ctx)
    prompt = response_prompt(state, res, text)
    prefix = response_prefix(state, res, ctx)
    rec = LLMCall(stage="response", method="generated", prompt=prompt, prefix=prefix, fallback=False)
    try:
        answer = _generate(res, prompt, ctx, prefix)
        rec["completion"] = answer[len(prefix) :] if prefix else answer
    except Exception as exc:  # a dead LLM endpoint: answer from the expert output
        answer, rec["error"] = "", f"{type(exc).__name__}: {exc}"
    head = prefix.strip()
    summary = summary_of(state, res)
    supported = f"{summary}\n{head}\n{text}"  # what the experts found, and what the user said
    out = state.get("expert_output") or {}
    top = (out.get("items") or [None])[0] if state["subtask"]["name"] == RECOMMENDATION else None  # type: ignore[index]
    facts = [*res.env.facts_of(top), str(out.get("reason") or "")] if top else []
    said = _grounded(answer[len(head) :] if head else answer, supported, facts, bool(head), res, rec)
    answer = f"{head} {said}".strip() if head else said
    if len(answer) < 2 or (top and top.split(" (")[0].lower() not in answer.lower()):
        rec["fallback"] = True
        rec.setdefault("error", "empty response" if len(answer) < 2 else "response does not name the recommended item")
        answer = template_response(state)
    if out.get("notice"):  # an expert failed and another answered: the user is told
        answer = f"{answer} {out['notice']}"
    rec["grounding"] = check(answer, supported, top, facts, res.item_titles).as_row()
    rec["seconds"] = time.perf_counter() - start
    return {**_close_turn(state, answer), "response": answer, "summary": summary, "trajectory": [*traj, rec]}


def _grounded(said: str, supported: str, facts: list[str], after_prefix: bool, res: Resources, rec: LLMCall) -> str:
    """What the LLM said, without the sentences that claim what the ``supported`` text does not (an
    invented "Title (Year)", "You can find it on Netflix!"; the first is recorded in ``rec``), the filler
    ("You're right!"), and, after a forced grounded prefix, the sentences about nothing checkable."""
    kept, invented = without_invented_titles(said, res.item_titles) if TITLE_WITH_YEAR.search(said) else (said, [])
    if invented:  # the LLM named a "Title (Year)" that is no item: its sentence goes, the rest stays
        said, rec["error"] = kept, f"dropped a sentence naming {invented[0]!r}, which is no item of the catalog"
    kept, claims = without_unsupported(said, supported)
    if claims:
        said, rec["error"] = kept, f"dropped {len(claims)} sentence(s) the summary does not support: {claims[0]!r}"
    said = without_filler(said)
    return anchored(said, facts) if after_prefix else said


def _close_turn(state: State, answer: str) -> dict[str, Any]:
    """Append the answer, mark the turn answered, and keep the messages window bounded."""
    view = decision_view(state, answer)
    reply = AIMessage(answer, id=str(uuid.uuid4()), response_metadata={DECISION_VIEW: view} if view != answer else {})
    window = trim([*state.get("messages", []), reply], state.get("earlier") or "")
    return {
        "messages": [reply, *window.get("messages", [])],
        "answered": reply.id,
        "decision_features": None,  # the turn is over: its LLM features are not kept in the checkpoints after it
        **({"earlier": window["earlier"]} if window else {}),
    }
