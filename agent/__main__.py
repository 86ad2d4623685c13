"""``python -m agent``: a terminal chat with the CRS, and a demo over a real test dialogue.

``chat`` keeps sessions in a SQLite checkpointer (``--thread ID`` resumes one), shows each stage
as it happens (sub-task, expert, output) and streams the response. ``demo`` plays the user side
of a dialogue from a dataset's test split against the graph, printing every stage.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from rich.console import Console
from rich.markup import escape

from agent.config import GraphConfig
from agent.context import Context
from crsdata.paths import DataError, SetupError

console = Console(highlight=False)


def _stage_line(node: str, update: dict[str, Any]) -> str | None:
    traj = update.get("trajectory") or []
    last = traj[-1] if traj else {}
    tag = " [yellow](fallback)[/]" if last.get("fallback") else ""
    secs = f" [dim]{last.get('seconds', 0):.1f}s[/]" if last else ""
    if node == "admit" and update.get("error"):
        return f"[red]{escape(str(update['error']))}[/]"
    if node == "detect" and update.get("subtask"):
        call = update["subtask"]
        args = {k: v for k, v in call["args"].items() if k != "dialogue context"}
        return f"[cyan]1 sub-task[/] {escape(call['name'])} {escape(str(args)) if args else ''} -> {call['output_type']}{tag}{secs}"
    if node == "match":
        blend = update.get("blend") or {}
        shares = (
            f" [dim]blended with {escape(', '.join(f'{e} {w:.0%}' for e, w in blend.items() if e != update.get('expert')))}[/]"
            if blend
            else ""
        )
        return f"[cyan]2 expert[/] {escape(str(update.get('expert')))}{shares}{tag}{secs}"
    if node == "execute":
        out = update.get("expert_output") or {}
        skipped = "" if len(traj) < 2 or traj[-2].get("stage") != "matching" or traj[-2].get("method") != "skipped" else " (only candidate)"
        items = f" items: {', '.join(out.get('items', [])[:5])}" if out.get("items") else ""
        who = escape(f"[{update.get('expert')}{skipped}]")
        return f"[cyan]3 output[/] {who} {escape(str(out.get('text', '')))}{escape(items)}{tag}{secs}"
    return None


def run_turn(graph: Any, text: str | None, config: dict[str, Any], ctx: Context, stream: bool = True) -> str:
    """Send one user message (``None``: finish the thread's interrupted turn), print the stages and stream
    the response; return the response.

    The response streams as the graph checks it (``custom`` events ``{"reply": the checked text so far}``:
    the grounded prefix at once, then each sentence the grounding check keeps), so no sentence is shown
    that the check later drops; the final response completes it, or replaces it after a fallback, so the
    terminal shows what the thread keeps.
    """
    response, shown = "", ""

    def show(reply: str, tag: str = "") -> None:
        nonlocal shown
        if reply.startswith(shown) and not tag:
            console.print(("" if shown else "[cyan]4 response[/] ") + escape(reply[len(shown) :]), end="")
        else:  # not what was shown: the template after a fallback
            console.print(f"\n  [yellow]{tag or '(revised)'}[/] " + escape(reply), end="")
        shown = reply

    turn = None if text is None else {"messages": [HumanMessage(text)]}
    for mode, payload in graph.stream(turn, config, context=ctx, stream_mode=["updates", "custom"]):
        if mode == "updates":
            for node, update in payload.items():
                if node == "respond":
                    response = update.get("response") or ""
                    fallback = (update.get("trajectory") or [{}])[-1].get("fallback")
                    if response != shown:
                        show(response, "(fallback)" if fallback and shown else "")
                    continue
                line = _stage_line(node, update or {})
                if line:
                    console.print(line)
        elif stream and mode == "custom" and isinstance(payload, dict) and payload.get("reply"):
            show(str(payload["reply"]))
    console.print()
    return response


def _build(args: argparse.Namespace, checkpointer: Any) -> Any:
    from agent.graph import build_crs_graph
    from agent.llm import load_chat_model

    config = GraphConfig.of(args)
    # the model now, so that a model that cannot load fails before the first turn
    return build_crs_graph(model=load_chat_model(config.model), checkpointer=checkpointer, config=config)


def cmd_chat(args: argparse.Namespace) -> None:
    from agent.memory import default_checkpointer, open_checkpointer, redact

    db = args.db or default_checkpointer()
    thread = args.thread or uuid.uuid4().hex[:8]
    with open_checkpointer(db) as saver:
        graph = _build(args, saver)
        config = {"configurable": {"thread_id": thread}}
        history = graph.get_state(config).values.get("messages", [])
        where = redact(db)  # no password on screen
        console.print(
            f"[bold]llmcrs[/] thread [green]{thread}[/] (resume with --thread {thread}); sessions in {where}. Empty line or Ctrl-D quits."
        )
        for m in history:
            console.print(f"[dim]{'you' if m.type == 'human' else 'crs'}> {escape(str(m.content))}[/]")
        tasks = graph.get_state(config).tasks
        if tasks and not any(t.error for t in tasks):  # a process stopped mid-turn: LangGraph resumes from the last saved step
            console.print("[yellow]the last session stopped during a turn; finishing it now[/]")
            try:
                run_turn(graph, None, config, Context())
            except SetupError as exc:  # the next message starts a new turn
                console.print(f"[red]could not finish it:[/] {escape(str(exc))}")
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            run_turn(graph, text, config, Context())


def transcript(graph: Any, config: dict[str, Any]) -> list[dict[str, str]]:
    """Every message of a thread, oldest first, from its checkpoint history (the state keeps only a window)."""
    seen: dict[str, Any] = {}
    for snap in reversed(list(graph.get_state_history(config))):
        for m in snap.values.get("messages", []):
            seen.setdefault(m.id, m)
    return [{"role": "user" if m.type == "human" else "assistant", "content": str(m.content)} for m in seen.values()]


def cmd_export(args: argparse.Namespace) -> None:
    import json

    from agent.memory import default_checkpointer, is_postgres, open_checkpointer, redact

    db = args.db or default_checkpointer()
    if not is_postgres(db) and not Path(db).is_file():
        raise DataError(f"no chat sessions at {db}; start one with `python -m agent chat`")
    with open_checkpointer(db) as saver:
        from agent.graph import build_crs_graph

        # reading a transcript needs the checkpoints only: the graph loads no model until a turn runs
        rows = transcript(build_crs_graph(checkpointer=saver, dataset=args.dataset), {"configurable": {"thread_id": args.thread}})
    if not rows:
        raise DataError(f"thread {args.thread!r} has no messages in {redact(db)}")
    for row in rows:
        print(json.dumps(row, ensure_ascii=False))


def cmd_demo(args: argparse.Namespace) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    from crsdata.loaders import load_dialogues

    dialogues = [d for d in load_dialogues(args.dataset, "test", args.data_root) if sum(t.role == "user" for t in d.turns) >= args.turns]
    if not dialogues:
        raise DataError(f"{args.dataset}/test has no dialogue with {args.turns} user turns")
    dlg = dialogues[args.index % len(dialogues)]
    graph = _build(args, InMemorySaver())
    config = {"configurable": {"thread_id": f"demo-{dlg.dialog_id}"}}
    console.rule(
        f"{args.dataset} test dialogue {dlg.dialog_id}: the user's turns, answered by llmcrs ({args.model or 'embedded SmolLM2-135M-Instruct'})"
    )
    user_turns = [t for t in dlg.turns if t.role == "user"][: args.turns]
    for turn in user_turns:
        console.print(f"\n[bold]user>[/] {escape(turn.text)}")
        nxt = dlg.turns.index(turn) + 1
        if nxt < len(dlg.turns) and dlg.turns[nxt].role == "recommender":
            ref = dlg.turns[nxt]
            targets = f" | targets: {', '.join(ref.items)}" if ref.items else ""
            console.print(f"[dim]  (reference recommender: {escape(ref.text + targets)})[/]")
        run_turn(graph, turn.text, config, Context(), stream=True)


def cmd_serve(args: argparse.Namespace) -> int:
    """``langgraph dev`` on this repo's langgraph.json, with the limits this machine can serve (:mod:`agent.server`)."""
    from agent.server import serve

    return serve(model=args.model, manager=args.manager, dataset=args.dataset, data_root=args.data_root, host=args.host,
                 port=args.port, jobs=args.jobs, max_request_bytes=args.max_request_bytes, reload=args.reload, resume=args.resume)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    # the shared options are accepted before or after the sub-command (`--dataset redial demo` or `demo --dataset redial`)
    # the graph's options are GraphConfig's fields (help, types and aliases from the dataclass), without
    # defaults: a default of the shared Action objects would be applied by the sub-command's parser over a
    # value given before the sub-command (`--dataset x demo` -> redial); the defaults are filled in below
    from transformers import HfArgumentParser

    common = HfArgumentParser(GraphConfig, add_help=False)  # type: ignore[arg-type]
    for action in common._actions:
        action.default = argparse.SUPPRESS
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__, parents=[common])
    shared = {f.name: f.default for f in fields(GraphConfig)}
    sub = parser.add_subparsers(dest="cmd")
    p = sub.add_parser("chat", help="interactive chat (default)", parents=[common])
    p.add_argument("--thread", default=None, help="resume this thread id")
    p.add_argument(
        "--db", default=None, help="SQLite file or postgresql:// URL (default: $LLMCRS_CHECKPOINTER or $LLMCRS_HOME/chat.sqlite)"
    )
    p.set_defaults(func=cmd_chat)
    p = sub.add_parser("demo", help="play a real test dialogue's user turns", parents=[common])
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--turns", type=int, default=3)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("export", help="print a thread's whole transcript as JSON lines", parents=[common])
    p.add_argument("--thread", required=True)
    p.add_argument(
        "--db", default=None, help="SQLite file or postgresql:// URL (default: $LLMCRS_CHECKPOINTER or $LLMCRS_HOME/chat.sqlite)"
    )
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("serve", help="the LangGraph server API (langgraph dev) with this machine's limits", parents=[common])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2024)
    p.add_argument("--jobs", type=int, default=2, help="concurrent runs per worker (2 cores: 2; a GPU server: more)")
    p.add_argument(
        "--max-request-bytes", type=int, default=None, help="larger request bodies get 413 (default: $LLMCRS_MAX_REQUEST_BYTES or 64 KB)"
    )
    p.add_argument("--reload", action="store_true", help="reload on code changes")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="after a crash, leave interrupted turns unanswered instead of finishing them")  # fmt: skip
    p.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    if args.cmd is None:
        args = parser.parse_args([*(argv or sys.argv[1:]), "chat"])
    for key, value in shared.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    try:
        code = args.func(args)
    except (SetupError, ValueError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
