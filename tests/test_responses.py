"""The response stage's training data (``python -m rl.responses``): prompt #3 as the graph writes it, with the
summary built by teacher forcing from the reference turn, and the reference response as the target."""

from __future__ import annotations

import json

import rl.responses
from crsdata.loaders import load_dialogues
from rl.decisions import recommender_turns
from tools.dialogue import format_dialogue
from tools.subtasks import RECOMMENDATION


def test_response_rows_are_the_graphs_prompt_for_the_reference_turn(real_root, tmp_path, monkeypatch):
    monkeypatch.setattr(rl.responses, "responses_path", lambda dataset, split: tmp_path / f"{dataset}-{split}.jsonl")
    path, seen, usable = rl.responses.build("redial", "valid", str(real_root), dialogues=20, progress=False)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    turns = {f"{d.dialog_id}/{i}": (d, i) for d, i, _ in recommender_turns(load_dialogues("redial", "valid", real_root)[:20])}
    assert sum(seen.values()) == len(turns) and len(rows) == sum(usable.values()) > 0.8 * len(turns)
    recommendations = [r for r in rows if r["subtask"] == RECOMMENDATION]
    assert len(recommendations) >= 20 and {r["subtask"] for r in rows} > {RECOMMENDATION}
    for row in rows:
        dlg, i = turns[row["id"]]
        assert row["target"] == dlg.turns[i].text.strip()  # the reference is the target
        window = format_dialogue([(t.role, t.text) for t in dlg.turns[:i]][-6:])
        assert f"Dialogue context:\n{window}\nSub-task: {row['subtask']}\n" in row["prompt"]  # as the graph shows it
        assert row["prompt"].count("Expert output: ") == 1 and row["summary"].startswith(f"Sub-task: {row['subtask']}")
    for row in recommendations:
        dlg, i = turns[row["id"]]
        assert row["items"] and set(row["items"]) <= set(dlg.turns[i].items)  # the reference's own items
        assert f"Expert output: {row['items'][0]}" in row["prompt"] and row["facts"]
    assert sum("\nAbout: " in r["prompt"] for r in recommendations) >= 0.8 * len(recommendations)  # the catalog's facts reach the prompt
