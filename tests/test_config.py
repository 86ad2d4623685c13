"""GraphConfig: one place for the graph's options, which every command parses and the graph builds from."""

from __future__ import annotations

import pytest
from transformers import HfArgumentParser

from agent.config import GraphConfig
from agent.graph import build_crs_graph
from eval.bench_llm import BenchLLMArguments
from eval.harness import RunConfig
from eval.paper import PaperArguments
from eval.scripted import ScriptedArguments
from eval.simulate import SimulateArguments
from eval.wishes import WishesArguments

COMMANDS = [RunConfig, SimulateArguments, PaperArguments, WishesArguments, ScriptedArguments, BenchLLMArguments]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__)
def test_every_command_parses_the_graph_options_and_hands_them_on_whole(command):
    argv = [
        "--model",
        "openai:m@http://x",
        "--dataset",
        "opendialkg",
        "--data_root",
        "/d",
        "--manager",
        "prompt",
        "--demos",
        "2",
        "--seed",
        "3",
    ]
    (args,) = HfArgumentParser(command).parse_args_into_dataclasses(args=argv)
    assert GraphConfig.of(args) == GraphConfig(
        model="openai:m@http://x", dataset="opendialkg", data_root="/d", manager="prompt", n_demos=2, seed=3
    )


def test_the_graph_builds_from_the_config_and_keywords_override_it():
    cfg = GraphConfig(dataset="opendialkg", manager="rule", n_demos=1, seed=5)
    res = build_crs_graph(config=cfg, n_demos=3).resources
    assert (res.dataset, res.manager_mode, res.n_demos, res.seed) == ("opendialkg", "rule", 3, 5)
    assert res.config == GraphConfig(dataset="opendialkg", manager="rule", n_demos=3, seed=5)
    assert build_crs_graph(config=cfg, ablations="wo_m").resources.ablations.management is False


@pytest.mark.parametrize(
    ("change", "message"),
    [({"manager": "oracle"}, "unknown manager"), ({"n_demos": -1}, "n_demos"), ({"ablation": "wo_x"}, "unknown ablation")],
)
def test_a_bad_option_is_refused_when_the_config_is_made(change, message):
    with pytest.raises(ValueError, match=message):
        GraphConfig(**change)
    with pytest.raises(ValueError, match=message):
        build_crs_graph(
            **{"manager" if "manager" in change else "n_demos" if "n_demos" in change else "ablations": next(iter(change.values()))}
        )
