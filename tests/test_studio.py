"""``langgraph dev`` configuration: the graph it names imports and compiles."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

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


@pytest.mark.e2e
@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb")))
def test_notebook_runs_top_to_bottom(notebook, real_root, tmp_path, monkeypatch):
    """Each notebook executes (nbclient, a few turns) and draws its figures; the executed copy is kept."""
    import time

    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LLMCRS_NOTEBOOK_TURNS", "3")
    monkeypatch.setenv("LLMCRS_DATA_DIR", str(real_root))
    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    print(f"{notebook} executed in {time.perf_counter() - start:.1f} s")
    nbformat.write(nb, tmp_path / notebook)
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the HIT@10 bars and the reward curve
