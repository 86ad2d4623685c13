"""``python -m eval.bench_llm``: latency of the manager's decisions on the embedded default, on real
test contexts (figures and ratios, never asserted in tests):

* the trained manager (``--manager trained``, the default): detection and matching of one turn by
  the decision head, one LLM pass over the compact decision prompt shared by both;
* the prompted manager (``--manager prompt``): a constrained detection decision on the paper's
  prompt, with and without the prompt-prefix KV cache;
* the response stage (``--stage reply``): one reply on the test split's response rows (:mod:`rl.responses`),
  by the reply adapter from the compact prompt and by the base model after the grounded prefix, with the
  process's peak memory.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from langchain_core.messages import HumanMessage

from agent.config import GraphConfig
from agent.deciders import detection_prompt
from agent.llm import LocalHFChatModel, load_chat_model
from agent.resources import Resources
from crsdata.loaders import load_samples
from tools.dialogue import format_turns
from tools.subtasks import SUBTASKS


@dataclass
class BenchLLMArguments(GraphConfig):
    """``python -m eval.bench_llm`` (the model, dataset and manager are :class:`GraphConfig`'s)."""

    contexts: int = field(default=20, metadata={"help": "test contexts timed"})
    stage: Literal["decisions", "reply"] = field(
        default="decisions", metadata={"help": "decisions (the manager) or reply (the response stage)"}
    )


def main(argv: list[str] | None = None) -> None:
    from transformers import HfArgumentParser

    (args,) = HfArgumentParser(BenchLLMArguments).parse_args_into_dataclasses(args=argv)  # type: ignore[arg-type]
    model = load_chat_model(args.model)
    if not isinstance(model, LocalHFChatModel):  # a remote chat model has no weights to time here
        raise SystemExit(f"eval.bench_llm times the local model; the configured one is {type(model).__name__}")
    if args.stage == "reply":
        bench_reply(model, args.dataset, args.contexts)
        return
    if args.manager == "rule":
        raise SystemExit("the rule takes no LLM decision to time: --manager trained or prompt")
    if args.manager == "trained":
        bench_trained(model, args.dataset, args.contexts)
        return
    res = Resources(GraphConfig.of(args), model=model, tools=[])
    samples = load_samples(args.dataset, "test", args.data_root, limit=args.contexts)
    prompts = [detection_prompt(res, format_turns(s.context[-6:])) for s in samples]
    tokens = [len(model._ids(model.render([HumanMessage(p)]))) for p in prompts]
    options = list(SUBTASKS)
    rows = {}
    for label, size in (("no cache", 0), ("prefix cache", 4)):
        chat = LocalHFChatModel(hf_model=model.hf_model, hf_tokenizer=model.hf_tokenizer, prefix_cache_size=size)
        times = []
        with torch.no_grad():
            for p in prompts:
                start = time.perf_counter()
                chat.choice_logprobs([HumanMessage(p)], options, prefix='{"name": "', suffix='"}')
                times.append(time.perf_counter() - start)
        rows[label] = times
        print(f"{label:>12}: median {statistics.median(times):.3f}s  mean {statistics.mean(times):.3f}s  (first {times[0]:.3f}s)")
    print(
        f"prompt tokens: median {statistics.median(tokens)}; speed-up of the median: {statistics.median(rows['no cache']) / statistics.median(rows['prefix cache']):.2f}x"
    )


def bench_trained(model: LocalHFChatModel, dataset: str, n: int) -> None:
    """Per-turn latency of the trained manager's two decisions (detection + matching)."""
    from agent.manager import trained_manager
    from tools.env import expert_env

    manager = trained_manager(dataset, model, expert_env(dataset))
    if manager is None:
        raise SystemExit(f"no trained manager for {dataset}")
    samples = load_samples(dataset, "test", limit=n + 1)
    manager.distributions([(t.role, t.text) for t in samples[0].context], [])  # warm-up
    det, both = [], []
    for s in samples[1:]:
        dialogue = [(t.role, t.text) for t in s.context]
        start = time.perf_counter()
        features = manager.features(dialogue, [])
        manager.distributions(dialogue, [], features)  # detection: the LLM pass and the head
        mid = time.perf_counter()
        manager.distributions(dialogue, [], features)  # matching: the same pass (carried by the turn) and the head
        end = time.perf_counter()
        det.append(mid - start)
        both.append(end - start)
    q = sorted(both)[int(0.95 * (len(both) - 1))]
    print(
        f"trained manager on {len(both)} {dataset} test turns: detection median {statistics.median(det):.3f}s; "
        f"detection + matching median {statistics.median(both):.3f}s, p95 {q:.3f}s"
    )


def bench_reply(model: LocalHFChatModel, dataset: str, n: int) -> None:
    """Per-turn latency of the response stage's generation on ``n`` test rows (recommendations and
    elicitations, the turns the adapter voices), with the reply adapter and with the base model after the
    grounded prefix; and the peak memory of the process."""
    import json
    import random
    import resource

    from agent.context import Context
    from agent.reply_adapter import use_reply_adapter
    from agent.respond import REPLY_TOKENS
    from rl.responses import build, responses_path

    if not use_reply_adapter(model, dataset):
        raise SystemExit(f"no reply adapter for {dataset} on {model.model_name}: train one with rl/configs/reply_{dataset}.yaml")
    path = responses_path(dataset, "test")
    if not path.is_file():
        path = build(dataset, "test")[0]
    rows = [
        r
        for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())
        if r["subtask"] in ("recommendation", "user preference elicitation")
    ]
    rows = random.Random(0).sample(rows, min(n + 1, len(rows)))
    ctx = Context()
    runs = {
        "tuned reply": lambda r: model.invoke([HumanMessage(r["reply_prompt"])], max_new_tokens=REPLY_TOKENS, stop=["\n"], tuned=True),
        "base, after the prefix": lambda r: model.invoke([HumanMessage(r["prompt"])], max_new_tokens=ctx.max_new_tokens,
                                                          response_prefix=f"You might like {r['items'][0]}. " if r["items"] else "",
                                                          stop=["\n", ". ", "! ", "? "]),
    }  # fmt: skip
    medians = {}
    for label, run in runs.items():
        run(rows[0])  # warm-up
        times = []
        for r in rows[1:]:
            start = time.perf_counter()
            run(r)
            times.append(time.perf_counter() - start)
        medians[label] = statistics.median(times)
        q = sorted(times)[int(0.95 * (len(times) - 1))]
        print(f"{label:>24}: median {medians[label]:.3f}s  p95 {q:.3f}s  on {len(times)} {dataset} test turns")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # kilobytes on Linux
    print(
        f"tuned / base median: {medians['tuned reply'] / medians['base, after the prefix']:.2f}x; peak memory of the process {peak:.2f} GB"
    )


if __name__ == "__main__":
    main()
