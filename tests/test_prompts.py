"""The Table 2 templates and their strict rendering."""

from __future__ import annotations

import pytest

import prompts


def test_templates_have_the_papers_slots():
    assert prompts.slots("detection") == ["Sub-Task List", "Sub-Task Schema", "Demonstrations", "Dialogue Context"]
    assert prompts.slots("matching") == ["Sub-Task Goal", "[ID, Description]"]
    assert prompts.slots("response") == ["Dialogue Context", "Sub-Task Name", "ID, Description", "Output"]


def test_missing_or_unknown_slot_is_an_error():
    with pytest.raises(prompts.PromptError, match=r"missing slots \['\[ID, Description\]'\]"):
        prompts.render("matching", {"Sub-Task Goal": "x"})
    with pytest.raises(prompts.PromptError, match=r"unknown slots \['Extra'\]"):
        prompts.render("matching", {"Sub-Task Goal": "x", "[ID, Description]": "y", "Extra": "z"})
    with pytest.raises(prompts.PromptError, match="unknown prompt template"):
        prompts.template("nope")


def test_values_are_inserted_verbatim_and_json_braces_survive():
    out = prompts.render("matching", {"Sub-Task Goal": "{Output} stays", "[ID, Description]": "[a, b]"})
    assert "{Output} stays" in out and "[a, b]" in out
    assert '{"id": <model ID>}' in out
    assert prompts.render("matching", {"Sub-Task Goal": "", "[ID, Description]": ""})  # explicit empty is allowed
