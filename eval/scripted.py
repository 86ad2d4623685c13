"""``python -m eval scripted``: the scripted conversations (a user's turns with the sub-task each asks for),
played through ``build_crs_graph()`` with a checkpointer, on any model and manager: how often the manager
detects the right sub-task. The conversations after the comment in :data:`SCRIPTS` were written after the
shipped manager was trained, so they are held out from it.

    python -m eval scripted                                          # the shipped trained manager
    python -m eval scripted --model openai:<m>@http://127.0.0.1:8000/v1 --manager prompt   # any served LLM
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from agent.config import GraphConfig
from tools.subtasks import DETAIL_SEARCH, ELICITATION, EXPLANATION, RECOMMENDATION

SCRIPTS = [  # (user turn, expected sub-task); each list is one conversation
    [("I loved Get Out (2017), something like it?", RECOMMENDATION), ("why that one?", EXPLANATION), ("Who directed it?", DETAIL_SEARCH)],
    [("Hi! Can you help me find a movie?", ELICITATION), ("I really like The Shining (1980) and It (2017)", RECOMMENDATION),
     ("What makes it a good pick for me?", EXPLANATION)],
    [("Who directed Titanic (1997)?", DETAIL_SEARCH), ("I enjoyed Titanic (1997) and The Notebook (2004), any similar romance?", RECOMMENDATION),
     ("why do you think I'd like it", EXPLANATION)],
    [("hello", ELICITATION), ("Any comedy like Superbad (2007)?", RECOMMENDATION), ("Who is in it?", DETAIL_SEARCH)],
    # written after the manager was trained (a retrained head that scored 14 of these 19 was not shipped)
    [("Hey, I want to watch something tonight", ELICITATION), ("I'm a big fan of Alien (1979) and Aliens (1986)", RECOMMENDATION),
     ("why would I like that?", EXPLANATION), ("who stars in it?", DETAIL_SEARCH)],
    [("Can you recommend a movie similar to The Matrix (1999)?", RECOMMENDATION), ("How come you picked that one?", EXPLANATION),
     ("What year did it come out?", DETAIL_SEARCH)],
    [("Good evening!", ELICITATION), ("I liked Toy Story (1995), something for the kids?", RECOMMENDATION), ("Who made it?", DETAIL_SEARCH)],
    [("What is Inception (2010) about?", DETAIL_SEARCH), ("Cool, I loved Inception (2010), got anything like it?", RECOMMENDATION),
     ("Why that?", EXPLANATION)],
    [("I'm bored", ELICITATION), ("Something like Mean Girls (2004) please", RECOMMENDATION), ("explain why you chose it", EXPLANATION)],
    [("Who directed Jaws (1975)?", DETAIL_SEARCH), ("I love Jaws (1975) and Jurassic Park (1993). Recommend me one?", RECOMMENDATION),
     ("Who is the director of that one?", DETAIL_SEARCH)],
    # written in a later round, before any head was run on them (the shipped ReDial head: 19 of 20)
    [("Hi there", ELICITATION), ("I adore The Princess Bride (1987) and Shrek (2001)", RECOMMENDATION),
     ("What about it fits my taste?", EXPLANATION), ("Who plays the lead?", DETAIL_SEARCH)],
    [("Looking for a thriller, I liked Se7en (1995)", RECOMMENDATION), ("why did you suggest that?", EXPLANATION),
     ("when was it released?", DETAIL_SEARCH)],
    [("Can you tell me who directed Pulp Fiction (1994)?", DETAIL_SEARCH),
     ("Great, I love Pulp Fiction (1994), suggest something like it", RECOMMENDATION), ("what makes that similar?", EXPLANATION)],
    [("Hello, I need a movie for date night", ELICITATION), ("We both liked La La Land (2016)", RECOMMENDATION),
     ("Who composed the music?", DETAIL_SEARCH)],
    [("hey what's up", ELICITATION), ("I really enjoyed The Dark Knight (2008) and Batman Begins (2005)", RECOMMENDATION),
     ("why that one though?", EXPLANATION)],
    [("Who starred in Forrest Gump (1994)?", DETAIL_SEARCH), ("I loved Forrest Gump (1994), any movie like that?", RECOMMENDATION),
     ("Why would I enjoy it?", EXPLANATION), ("Who directed it?", DETAIL_SEARCH)],
    # written in stop 38 before any head ran on them (the shipped ReDial head: 34 of 38, 35 once an explanation was no longer
    # repeated for "What genre is it?"; a retrained head: 33)
    [("Good morning", ELICITATION), ("My favourite films are Up (2009) and Coco (2017)", RECOMMENDATION),
     ("What's the reason you chose it?", EXPLANATION), ("Who are the main actors?", DETAIL_SEARCH)],
    [("Could you suggest a horror film like The Conjuring (2013)?", RECOMMENDATION), ("why is that a good fit?", EXPLANATION),
     ("who directed that film?", DETAIL_SEARCH)],
    [("Howdy!", ELICITATION), ("Movies like Interstellar (2014) are my thing", RECOMMENDATION), ("Tell me why you think so", EXPLANATION)],
    [("Who is in The Godfather (1972)?", DETAIL_SEARCH), ("I love The Godfather (1972). What else would I like?", RECOMMENDATION),
     ("What year is that from?", DETAIL_SEARCH)],
    [("I need help picking a film", ELICITATION), ("Recently watched A Quiet Place (2018) and loved it", RECOMMENDATION),
     ("Why did you pick it for me?", EXPLANATION), ("What genre is it?", DETAIL_SEARCH)],
    [("yo", ELICITATION), ("give me something like Die Hard (1988)", RECOMMENDATION), ("who's the star?", DETAIL_SEARCH),
     ("why that movie?", EXPLANATION)],
    [("Hi, I'm looking for a film to watch", ELICITATION), ("I enjoyed Gladiator (2000) and Braveheart (1995)", RECOMMENDATION),
     ("How does it match what I like?", EXPLANATION), ("Who directed it?", DETAIL_SEARCH)],
    [("Suggest a movie similar to Finding Nemo (2003)", RECOMMENDATION), ("Why do you recommend it?", EXPLANATION),
     ("Who voices the main character?", DETAIL_SEARCH)],
    [("Hey!", ELICITATION), ("Big fan of Harry Potter and the Sorcerer's Stone (2001)", RECOMMENDATION), ("what's it about?", DETAIL_SEARCH),
     ("why would my kids like it?", EXPLANATION)],
    [("Who directed The Silence of the Lambs (1991)?", DETAIL_SEARCH),
     ("I liked The Silence of the Lambs (1991), recommend a similar thriller", RECOMMENDATION), ("Why this one?", EXPLANATION)],
    [("Evening! Any ideas for tonight?", ELICITATION), ("I like Bridesmaids (2011) and The Hangover (2009)", RECOMMENDATION),
     ("Who stars in that?", DETAIL_SEARCH)],
]  # fmt: skip


@dataclass
class ScriptedArguments(GraphConfig):
    """``python -m eval scripted`` (the graph's options are :class:`GraphConfig`'s; the conversations are about movies)."""

    conversations: int | None = field(default=None, metadata={"help": "play the first N conversations only (default: all)"})
    results_dir: str = field(default="results", metadata={"help": "writes scripted/<dataset>/<manager>.json here"})


def play(graph_config: GraphConfig, conversations: int | None = None) -> dict[str, object]:
    """Play every scripted conversation; the sub-task accuracy and each turn's decision.

    Responses are not generated (``Context(generate=False)``): the decisions do not depend on them, and the
    dialogue the manager reads keeps the graph's grounded reply either way."""
    from langchain_core.messages import HumanMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.memory import InMemorySaver

    from agent.context import Context
    from agent.graph import build_crs_graph

    graph = build_crs_graph(checkpointer=InMemorySaver(), config=graph_config)
    turns: list[dict[str, str | int | None]] = []
    start = time.perf_counter()
    for n, script in enumerate(SCRIPTS[:conversations]):
        config: RunnableConfig = {"configurable": {"thread_id": f"script-{n}"}}
        for text, expected in script:
            out = graph.invoke({"messages": [HumanMessage(text)]}, config, context=Context(generate=False))
            detection = next(r for r in out["trajectory"] if r["stage"] == "detection")
            turns.append({"conversation": n, "user": text, "expected": expected, "detected": out["subtask"]["name"],
                          "method": detection["method"], "error": detection.get("error") or "", "expert": out.get("expert")})  # fmt: skip
    right = sum(t["detected"] == t["expected"] for t in turns)
    return {"right": right, "turns": len(turns), "accuracy": round(right / len(turns), 4),
            "fallbacks": sum(t["method"] == "rule" for t in turns), "seconds": round(time.perf_counter() - start, 1), "per_turn": turns}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(ScriptedArguments, prog="python -m eval scripted").parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained experts are named in warnings; the decisions are the figure here
        result = play(GraphConfig.of(args), args.conversations)
    out = Path(args.results_dir) / "scripted" / args.dataset / f"{args.manager}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**asdict(args), **result}, indent=1))
    print(f"{args.manager} manager on {args.model or 'embedded'}: {result['right']}/{result['turns']} sub-tasks right "
          f"({result['fallbacks']} decided by the rule after an unusable answer), {result['seconds']} s; {out}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
