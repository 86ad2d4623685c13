"""Demonstrations from training dialogues."""

from __future__ import annotations

import json

from agent.demos import demonstrations
from tools.subtasks import SUBTASKS


def test_demonstrations_are_balanced_schema_examples(real_root):
    demos = demonstrations("redial", 4, 0, str(real_root))
    assert len(demos) == 4 and len(set(demos)) == 4
    names = [json.loads(d.split("Sub-task: ", 1)[1])["name"] for d in demos]
    assert set(names) <= set(SUBTASKS) and len(set(names)) >= 3
    assert all(d.startswith("Dialogue context:\n") for d in demos)
    assert demonstrations("redial", 4, 0, str(real_root)) == demos  # seeded
    assert demonstrations("redial", 0, 0, str(real_root)) == ()
