"""Robust parsing of a choice out of free LLM text, for models that cannot be constrained.

Accepts a JSON object (also with single quotes or trailing text), a bare option name, or a
close misspelling; validates against the allowed options. Returns the error to show the model
on a retry when nothing valid is found.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rapidfuzz import fuzz, process

OBJECT = re.compile(r"\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}", re.S)
KEYS = ("name", "id", "task", "subtask", "sub-task", "model", "expert", "item")


def extract_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``, tolerating single quotes.

    >>> extract_json('Sure! {"name": "recommendation", "args": {}} hope it helps')
    {'name': 'recommendation', 'args': {}}
    >>> extract_json("{'id': 'x'}"), extract_json("no json")
    ({'id': 'x'}, None)
    """
    for match in OBJECT.finditer(text):
        raw = match.group(0)
        for candidate in (raw, raw.replace("'", '"')):
            try:
                value = json.loads(candidate)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _canon(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def parse_choice(text: str, options: list[str], key: str) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """Find which of ``options`` the text chose.

    Returns:
        ``(choice, error, obj)``: the option (or ``None``), the error message for a retry (or
        ``None``), and the parsed JSON object if there was one.

    >>> parse_choice('{"name": "Recommendation"}', ["recommendation", "explanation"], "name")[0]
    'recommendation'
    >>> parse_choice("I would pick explanation here.", ["recommendation", "explanation"], "name")[0]
    'explanation'
    >>> parse_choice('{"name": "dance"}', ["recommendation", "explanation"], "name")[1]
    "'dance' is not one of: recommendation, explanation"
    """
    canon = {_canon(o): o for o in options}
    obj = extract_json(text)
    if obj is not None:
        value = next((obj[k] for k in (key, *KEYS) if isinstance(obj.get(k), str)), None)
        if value is None:
            return None, f'the JSON has no "{key}" field', obj
        if _canon(value) in canon:
            return canon[_canon(value)], None, obj
        best = process.extractOne(_canon(value), list(canon), scorer=fuzz.ratio, score_cutoff=88)
        if best:
            return canon[best[0]], None, obj
        return None, f"{value!r} is not one of: {', '.join(options)}", obj
    body = _canon(text)
    if not body:
        return None, "the answer was empty", None
    named = [o for c, o in canon.items() if re.search(rf"(?<![a-z0-9]){re.escape(c)}(?![a-z0-9])", body)]
    if len(named) == 1:
        return named[0], None, None
    if len(named) > 1:
        return None, f"the answer names several options ({', '.join(named)}); give exactly one", None
    return None, f'no JSON object with "{key}" and no option named; options: {", ".join(options)}', None
