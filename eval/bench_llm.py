"""``python -m eval.bench_llm``: latency of a constrained detection decision on the embedded default,
with and without the prompt-prefix KV cache, on real test contexts (figures and their ratio)."""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from langchain_core.messages import HumanMessage

from agent.llm import LocalHFChatModel, load_chat_model
from agent.nodes import detection_prompt
from agent.resources import Ablations, Resources
from agent.subtasks import SUBTASKS
from crsdata.loaders import load_samples
from tools.dialogue import format_turns


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_llm", description=__doc__)
    parser.add_argument("--contexts", type=int, default=20)
    parser.add_argument("--demos", type=int, default=4)
    args = parser.parse_args(argv)
    model = load_chat_model()
    assert isinstance(model, LocalHFChatModel)
    res = Resources(model, [], "redial", None, args.demos, Ablations(), 0)
    prompts = [detection_prompt(res, format_turns(s.context[-6:])) for s in load_samples("redial", "test", limit=args.contexts)]
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


if __name__ == "__main__":
    main()
