"""The grounding check (agent/grounding.py) on hand-written replies: each class it must catch, and the
replies it must pass."""

from __future__ import annotations

import pytest

from agent.grounding import check

SUMMARY = "Sub-task: recommendation\nOutput: Heat (1995)\nAbout: a crime movie directed by Michael Mann\nUser: a crime movie?"
FACTS = ["crime", "Michael Mann", "Al Pacino", "1995"]
KNOWN = frozenset({"heat (1995)", "ronin (1998)"})


@pytest.mark.parametrize(
    ("reply", "claims", "invented"),
    [
        ("You might like Heat (1995). You can find it on Netflix!", 1, 0),  # a streaming service
        ("You might like Heat (1995). It won an Oscar.", 1, 0),  # an award
        ("You might like Heat (1995). It costs 5 dollars.", 1, 0),  # a price
        ("You might like Heat (1995). Find it here!", 1, 0),  # "find it here"
        ("You might like Heat (1995). It came out in 1996.", 1, 0),  # a wrong year
        ("You might like Heat (1995). It stars Tom Hanks.", 1, 0),  # a person the summary does not give
        ("You might like Heat (1995). Or try Blue Thunder (1983).", 1, 1),  # a title that is no item of the catalog
        ("You might like Heat (1995). It is a romantic comedy.", 1, 0),  # a genre the summary does not give
        ("You might like Heat (1995), a crime movie directed by Michael Mann.", 0, 0),
    ],
)
def test_the_check_catches_each_unsupported_claim(reply, claims, invented):
    found = check(reply, SUMMARY, "Heat (1995)", FACTS, KNOWN)
    assert (len(found.claims), len(found.invented)) == (claims, invented)
    assert found.grounded == (claims == 0 and invented == 0)


def test_the_check_counts_the_item_and_a_true_fact_but_not_the_title_year():
    assert check("Heat (1995) is a great crime movie.", SUMMARY, "Heat (1995)", FACTS).true_attribute
    assert not check("Have you seen Heat (1995)?", SUMMARY, "Heat (1995)", FACTS).true_attribute  # 1995 is its title's
    assert not check("Have you seen Ronin (1998)?", SUMMARY, "Heat (1995)", FACTS).names_item


def test_the_check_finds_field_dumps():
    assert check("Heat (1995) director: Michael Mann", SUMMARY).field_dump
    assert not check("Heat (1995) was directed by Michael Mann.", SUMMARY).field_dump
