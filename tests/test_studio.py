"""``langgraph dev`` configuration: the graph it names imports and compiles."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_langgraph_json_graph_imports_and_compiles():
    config = json.loads((ROOT / "langgraph.json").read_text())
    assert config["dependencies"] == ["."]
    for spec in config["graphs"].values():
        path, _, attr = spec.partition(":")
        module_spec = importlib.util.spec_from_file_location("studio_graph", ROOT / path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        graph = getattr(module, attr)
        assert {"detect", "match", "execute", "respond"} <= set(graph.get_graph().nodes)
        assert graph.checkpointer is None  # the server brings its own


def test_notebooks_are_valid_python():
    import ast

    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code, nb
        for cell in code:
            ast.parse("".join(cell["source"]))
