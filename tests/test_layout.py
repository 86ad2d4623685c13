"""Lower packages never import upper ones: crsdata, prompts < tools < agent < sim < rl < eval."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

ABOVE = {
    "crsdata": {"tools", "agent", "sim", "rl", "eval"},
    "prompts": {"tools", "agent", "sim", "rl", "eval"},
    "tools": {"agent", "sim", "rl", "eval"},
    "agent": {"sim", "rl", "eval"},
    "sim": {"rl", "eval"},
    "rl": {"eval"},
}


def imported_packages(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", sorted(ABOVE))
def test_lower_packages_do_not_import_upper_ones(package):
    breaches = [f"{path.relative_to(REPO)} imports {name}" for path in sorted((REPO / package).rglob("*.py"))
                for name in imported_packages(path) if name in ABOVE[package]]  # fmt: skip
    assert not breaches, breaches
