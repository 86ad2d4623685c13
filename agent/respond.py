"""Stage 4's parts: the summary (sub-task, expert, output) and prompt #3, the grounded recommendation sentence
and its prefix forcing on local models, the check that drops what nothing supports, the template fallback,
and closing the turn (the reply, with the view the trained manager reads of it, and the bounded window)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.constants import TAG_NOSTREAM

import prompts
from agent.boundary import trim
from agent.context import Context
from agent.dialogue import DECISION_VIEW, dialogue_text
from agent.grounding import anchored, check, names_item, without_filler, without_unsupported
from agent.llm import LocalHFChatModel
from agent.state import LLMCall, State
from agent.text import clean_response, offer, sentences, without_invented_titles
from crsdata.metrics import TITLE_WITH_YEAR
from crsdata.schema import Role
from tools.dialogue import format_dialogue
from tools.invoke import description_line
from tools.subtasks import ELICITATION, RECOMMENDATION

if TYPE_CHECKING:
    from agent.resources import Resources

EMPTY_TURN = "I didn't catch a message. Tell me what kind of movie or book you are looking for, or one you loved."


def summary_text(subtask: str, expert: str | None, out: dict[str, Any]) -> str:
    """The structured summary: sub-task name, expert model, sub-task output with its grounded reason, the
    catalog's facts and what was relaxed (one place: the response stage and its training data use it).

    >>> print(summary_text("recommendation", "kbrd", {"text": "Heat (1995)", "about": "a crime movie directed by Michael Mann"}))
    Sub-task: recommendation
    Expert model: kbrd
    Output: Heat (1995)
    About: a crime movie directed by Michael Mann
    """
    return f"Sub-task: {subtask}\nExpert model: {expert}\nOutput: {summary_output(out)}"


def summary_output(out: dict[str, Any]) -> str:
    """The summary's output: the expert's text, then its reason, the catalog's facts and what was relaxed, a line each."""
    why = f"\nReason: {out['reason']}" if out.get("reason") else ""
    why += f"\nAbout: {out['about']}" if out.get("about") else ""
    why += f"\nNote: {out['relaxed']}" if out.get("relaxed") else ""
    return f"{out.get('text', '')}{why}"


def summary_of(state: State, res: Resources) -> str:
    """The turn's summary (:func:`summary_text`)."""
    call = state["subtask"]
    assert call is not None
    return summary_text(call["name"], state.get("expert"), state.get("expert_output") or {})


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


#: Utterances, and words of each, that the tuned reply prompt shows (the reply adapter was trained on them:
#: a short prompt keeps its training and its generation within this machine's budget).
REPLY_TURNS, REPLY_WORDS = 2, 40
#: New tokens of a tuned reply (its training targets: a median of 17, the longest with a catalog sentence ~60).
REPLY_TOKENS = 48


def reply_prompt(dialogue: Sequence[tuple[Role, str]], subtask: str, out: dict[str, Any]) -> str:
    """The compact response prompt (``prompts/reply.txt``) the reply adapter reads: the last utterances,
    the sub-task, and what was found (a recommendation's first two items, else the expert's text, with
    the summary's reason, facts and notes). One place: the graph and the adapter's training rows use it.

    >>> print(reply_prompt([("user", "a crime movie?")], "recommendation", {"items": ["Heat (1995)"], "about": "a crime movie"}))
    Dialogue:
    User: a crime movie?
    Sub-task: recommendation
    Found: Heat (1995)
    About: a crime movie
    Reply to the user in one or two sentences, using only what was found.
    """
    window = [(role, " ".join(text.split()[:REPLY_WORDS])) for role, text in dialogue[-REPLY_TURNS:]]
    items = [str(x) for x in out.get("items") or []]
    found = {**out, "text": ", ".join(items[:2])} if subtask == RECOMMENDATION and items else out
    values = {"Dialogue Context": format_dialogue(window), "Sub-Task Name": subtask, "Output": summary_output(found)}
    return prompts.render("reply", values).strip()


#: Where the checked reply goes as it grows (the graph's stream writer: ``stream_mode="custom"`` events
#: ``{"reply": the checked text so far}``); the LLM's own tokens are never streamed (``nostream``), so a
#: client never shows a sentence the grounding check then drops.
Emit = Callable[[dict[str, Any]], None]


def generate(
    res: Resources, prompt: str, ctx: Context, prefix: str, on_text: Callable[[str], None] | None = None, tuned: bool = False
) -> str:
    """The LLM's text after ``prefix`` (one sentence after a forced prefix), cleaned of a cut-off sentence;
    with ``tuned``, the reply adapter's whole reply (up to :data:`REPLY_TOKENS`, one line). ``on_text`` gets
    the text generated so far after every chunk (the model streams then)."""
    kwargs: dict[str, Any] = {}
    if tuned:
        kwargs = {"max_new_tokens": max(ctx.max_new_tokens, REPLY_TOKENS), "stop": ["\n"], "tuned": True}
    elif isinstance(res.model, LocalHFChatModel):
        # after a forced prefix the model adds one sentence: stop at its end or at a new line
        kwargs = {"max_new_tokens": ctx.max_new_tokens, "response_prefix": prefix, "stop": ["\n", ". ", "! ", "? "] if prefix else ["\n\n"]}
    messages, config = [HumanMessage(prompt)], RunnableConfig(tags=[TAG_NOSTREAM])
    if on_text is None:
        text = str(res.model.invoke(messages, config=config, **kwargs).content)
    else:
        text = ""
        for chunk in res.model.stream(messages, config=config, **kwargs):
            text += str(chunk.content)
            on_text(text)
    if prefix and text.startswith(prefix):
        text = text[len(prefix) :]
    return clean_response(text, prefix)


def with_about(reply: str, about: str) -> str:
    """``reply`` followed by what the catalog says of its item (the reply adapter's training targets end so
    where the reference states no fact, :func:`rl.responses.sft_target`).

    >>> with_about("Have you seen Heat (1995)", "a crime movie directed by Michael Mann")
    'Have you seen Heat (1995). It is a crime movie directed by Michael Mann.'
    """
    reply = reply.rstrip()
    return f"{reply}{'' if reply[-1:] in '.!?' else '.'} It is {about}."


def uses_reply_adapter(state: State, ctx: Context, res: Resources) -> bool:
    """Whether the reply adapter writes this turn's reply: ``ctx.tuned_reply``, a local model with the
    dataset's adapter (:mod:`agent.reply_adapter`), the full summary (not w/o SG), and a sub-task it was
    trained to voice, a recommendation with items or an elicitation. A detail or an explanation is the
    expert's checked sentence, said as found."""
    call, out = state.get("subtask"), state.get("expert_output") or {}
    if not (ctx.tuned_reply and res.ablations.summary and call and isinstance(res.model, LocalHFChatModel) and res.model.has_reply_adapter):
        return False
    return (call["name"] == RECOMMENDATION and bool(out.get("items"))) or call["name"] == ELICITATION


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
        return offer(top, f", {wish}, as you asked")
    if out.get("reason"):
        return f"{offer(top)} {out['reason']}"
    return offer(top, f", {out['about']}" if out.get("about") else "")


def write_reply(state: State, ctx: Context, res: Resources, emit: Emit | None = None) -> tuple[str, str, LLMCall]:
    """The LLM's answer from the dialogue and the summary (prompt #3), after the grounded prefix on a local
    model, without what the summary does not support; the template when that leaves nothing or loses the
    recommended item, or when the LLM fails. Returns the answer, the summary and the stage's record.

    With ``emit``, the reply streams as it is checked: the grounded prefix at once, then (a local model)
    each sentence the LLM completes once the check keeps it, then the final answer (:data:`Emit`)."""
    dialogue, text = dialogue_text(state, ctx)
    tuned = uses_reply_adapter(state, ctx, res)
    name = state["subtask"]["name"] if state["subtask"] else ""
    prompt = reply_prompt(dialogue, name, state.get("expert_output") or {}) if tuned else response_prompt(state, res, text)
    prefix = "" if tuned else response_prefix(state, res, ctx)
    rec = LLMCall(stage="response", method="tuned" if tuned else "generated", prompt=prompt, prefix=prefix, fallback=False)
    head = prefix.strip()
    summary = summary_of(state, res)
    out = state.get("expert_output") or {}
    top = (out.get("items") or [None])[0] if state["subtask"]["name"] == RECOMMENDATION else None  # type: ignore[index]
    facts = [*res.env.facts_of(top), str(out.get("reason") or "")] if top else []
    # what the experts found, the catalog's facts of the item, and what the user said
    supported = f"{summary}\n{head}\n{'; '.join(facts)}\n{text}"
    shown, checked = [""], [0]  # the reply last emitted; how many complete sentences were checked

    def show(reply: str) -> None:
        if emit is not None and reply and reply != shown[0]:
            shown[0] = reply
            emit({"reply": reply})

    def on_text(so_far: str) -> None:  # the complete sentences so far, checked as the final answer is
        body = so_far[len(prefix) :] if prefix and so_far.startswith(prefix) else ("" if prefix else so_far)
        done = sentences(body)[:-1]  # the last may be cut yet
        if len(done) <= checked[0]:  # no sentence completed since the last chunk: nothing new to check
            return
        checked[0] = len(done)
        show(f"{head} {grounded(' '.join(done), supported, facts, bool(head), res, LLMCall(stage='response'))}".strip())

    show(head)
    try:
        # a local model streams its tokens to the check; an endpoint is called once (not every server streams)
        streamed = emit is not None and isinstance(res.model, LocalHFChatModel)
        answer = generate(res, prompt, ctx, prefix, on_text if streamed else None, tuned)
        rec["completion"] = answer[len(prefix) :] if prefix else answer
    except Exception as exc:  # a dead LLM endpoint: answer from the expert output
        answer, rec["error"] = "", f"{type(exc).__name__}: {exc}"
    said = grounded(answer[len(head) :] if head else answer, supported, facts, bool(head), res, rec)
    answer = f"{head} {said}".strip() if head else said
    if len(answer) < 2 or (top and not names_item(answer, top)):
        rec["fallback"] = True
        rec.setdefault("error", "empty response" if len(answer) < 2 else "response does not name the recommended item")
        answer = template_response(state)
    elif tuned and top and out.get("about") and not check(answer, supported, top, facts).true_attribute:
        answer = with_about(answer, out["about"])  # as the adapter was trained to say
    if out.get("notice"):  # an expert failed and another answered: the user is told
        answer = f"{answer} {out['notice']}"
    rec["grounding"] = check(answer, supported, top, facts, res.item_titles).as_row()
    show(answer)
    return answer, summary, rec


def grounded(said: str, supported: str, facts: list[str], after_prefix: bool, res: Resources, rec: LLMCall) -> str:
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


def decision_view(state: State, answer: str) -> str:
    """What the trained manager reads of this turn's reply: a recommendation as the sentence the head was
    trained on (the item, the wish it meets or what was relaxed, without the reason and the catalog facts
    the reply adds, and whatever the reply adapter wrote), any other reply as said. The reply informs the
    user, not the next decision: "why that one?" after "You might like It (2017). It (2017) and The Shining
    (1980) are both horror movies." is still an explanation, as after "Have you seen It (2017)? So creepy!"."""
    out = state.get("expert_output") or {}
    call = state.get("subtask")
    if call and call["name"] == RECOMMENDATION and out.get("items"):
        return recommendation_sentence({k: v for k, v in out.items() if k not in ("reason", "about")})
    return answer


def close_turn(state: State, answer: str) -> dict[str, Any]:
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
