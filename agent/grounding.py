"""The grounding check of a reply: does it claim only what the turn's summary supports?

The response stage runs it on every generated reply and drops the sentences that claim something no
expert said (where to watch or buy it, awards, prices, a year, a "Title (Year)", a name or a genre the
summary does not give); the evaluation counts its findings per system (:func:`check`). A small model continues "You
might like X." with "You can find it on Netflix!": nothing in the summary says so, so the user never
reads it.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from agent.text import sentences
from crsdata.metrics import invented_titles, titles_with_year

#: Claims a recommender's summary never supports: where to watch, buy or find an item, awards and
#: rankings, prices, and promises of time.
UNSUPPORTED = re.compile(
    r"\b(?:netflix|hulu|amazon|prime video|disney ?(?:\+|plus)|hbo|youtube|itunes|google play|redbox|apple tv|peacock|"
    r"paramount ?(?:\+|plus)|vudu|streaming|on demand|dvd|blu-?ray|"
    r"oscars?|academy awards?|golden globes?|emmys?|pulitzer|booker|awards?|award-winning|nominat\w*|best ?sell\w*|"
    r"box office|highest[- ]grossing|rotten tomatoes|imdb|acclaim\w*|critically|"
    r"dollars?|bucks|price[sd]?|costs?|on sale|discount|for free|is free|"
    r"find (?:it|them|this|that) (?:here|online|at|on|in)|watch (?:it|them|this|that) (?:here|online|now|at|on|for|in)|available (?:on|at|in|to|for)|"
    r"(?:buy|rent|download|order|stream) (?:it|them|this|that)|in theaters|tickets|click|link|"
    r"in \d+ (?:hours?|days?|minutes?|weeks?))\b|\$\s?\d",
    re.IGNORECASE,
)
#: Sentences that answer nothing: a small model agrees with the user ("You're right!") after its own
#: recommendation. The response stage drops them (they are no claim, so :func:`check` does not count them).
FILLER = re.compile(r"^(?:you'?re|you are) (?:right|welcome)\b|^(?:yes|exactly|sure|ok|okay|i agree|thank you|thanks)[.!]?$", re.IGNORECASE)
#: A name in a sentence (past its first word): one or more capitalised words ("Loch Ness", "Al Pacino").
NAME = re.compile(r"(?<=\s)[A-Z][\w'-]*(?:\s+(?:of|the|and|de|von|van|&)?\s*[A-Z][\w'-]*)*")
YEAR = re.compile(r"\b(?:18|19|20)\d\d\b")
#: "Heat (1995) director: Michael Mann": an attribute label with a colon, as a database prints it.
FIELD_DUMP = re.compile(r"\b(?:year|director|directors|cast|genre|genres|writer|writers|plot|language|author)s?:\s", re.IGNORECASE)


@dataclass(frozen=True)
class Grounding:
    """What :func:`check` found in one reply."""

    claims: tuple[str, ...] = ()  # sentences claiming what the summary does not support
    invented: tuple[str, ...] = ()  # "Title (Year)"s that are no item of the catalog
    names_item: bool = False  # the reply names the item the turn is about
    true_attribute: bool = False  # ... and one true catalog fact of it, or the turn's reason
    field_dump: bool = False  # the reply prints "attribute: value" fields
    sentences: int = 0

    @property
    def grounded(self) -> bool:
        """Nothing unsupported and no invented title."""
        return not self.claims and not self.invented

    def as_row(self) -> dict[str, Any]:
        """The findings as a JSON-ready dict (one per evaluated turn)."""
        return asdict(self)


#: The genres a reply's claim is checked for (a film's or a book's kind; words as common as "family",
#: "music" or "history" are left out: "for the family" claims no genre).
GENRES = ("action", "adventure", "animation", "animated", "biography", "comedy", "crime", "documentary", "drama", "fantasy", "film-noir",
          "horror", "musical", "mystery", "romance", "romantic", "sci-fi", "science fiction", "thriller", "western")  # fmt: skip


#: A genre word and the catalog's name of its genre ("a romantic film" is supported by "romance").
GENRE_KIN = {"romantic": "romance", "animated": "animation", "science fiction": "sci-fi"}


def _genre_pattern(genre: str) -> str:
    """A genre as a word, singular or plural ("comedy", "comedies", "dramas")."""
    g = re.escape(genre.lower())
    return rf"\b{g[:-1]}(?:y|ies)\b" if g.endswith("y") else rf"\b{g}s?\b"


def genre_claims(sentence: str, supported: str, genres: Iterable[str]) -> list[str]:
    """The genres (``genres``) that ``sentence`` names and the ``supported`` text does not:
    "The Shootist (1976) is a romantic comedy" when the summary says it is a western.

    >>> genre_claims("It is a great comedy.", "About: a western movie", ["comedy", "western"])
    ['comedy']
    >>> genre_claims("Another of the comedies you asked for.", "User: any comedy?", ["comedy"])
    []
    >>> genre_claims("A romantic film.", "About: a romance movie", GENRES)
    []
    """
    low, sup = sentence.lower(), supported.lower()
    return [
        g
        for g in genres
        if re.search(_genre_pattern(g), low) and not any(re.search(_genre_pattern(x), sup) for x in {g, GENRE_KIN.get(g, g)})
    ]


def unsupported(sentence: str, supported: str) -> bool:
    """Whether ``sentence`` claims something that the ``supported`` text (the turn's summary) does not:
    a phrase of :data:`UNSUPPORTED`, or a year, a "Title (Year)", a name (a person, a place, a title) or a
    genre (:data:`GENRES`) that the summary does not contain.

    >>> unsupported("You can find it on Netflix!", "You might like Heat (1995).")
    True
    >>> unsupported("It came out in 1996.", "Heat (1995) is a crime movie.")
    True
    >>> unsupported("It is a tense crime movie from 1995.", "Heat (1995) is a crime movie.")
    False
    >>> unsupported("Or try Ronin (1998).", "Heat (1995) is a crime movie."), unsupported("So Heat (1995) it is.", "Heat (1995)")
    (True, False)
    >>> unsupported("Its heroes sail to Loch Ness.", "Heat (1995)"), unsupported("And Al Pacino is great.", "Reason: Al Pacino stars in it")
    (True, False)
    """
    low = supported.lower()
    if any(m.group(0).lower() not in low for m in UNSUPPORTED.finditer(sentence)):
        return True
    if any(y.group(0) not in supported for y in YEAR.finditer(sentence)):
        return True
    if any(n.group(0).lower() not in low for n in NAME.finditer(sentence) if n.group(0) not in ("I", "I'm", "I'd", "I've")):
        return True
    if genre_claims(sentence, supported, GENRES):
        return True
    return any(not any(x in low for x in suffixes) for _, suffixes in titles_with_year(sentence))


def without_unsupported(text: str, supported: str) -> tuple[str, list[str]]:
    """``text`` without its sentences that claim what ``supported`` does not, and those sentences.

    >>> without_unsupported("It is tense. You can watch it on Hulu! Enjoy.", "You might like Heat (1995).")
    ('It is tense. Enjoy.', ['You can watch it on Hulu!'])
    """
    kept: list[str] = []
    dropped: list[str] = []
    for s in sentences(text):
        (dropped if unsupported(s, supported) else kept).append(s)
    return " ".join(kept), dropped


def without_filler(text: str) -> str:
    """``text`` without its :data:`FILLER` sentences.

    >>> without_filler("You're right! It is tense. Yes! Enjoy it.")
    'It is tense. Enjoy it.'
    """
    return " ".join(s for s in sentences(text) if not FILLER.search(s))


def anchored(text: str, facts: Iterable[str]) -> str:
    """``text`` without its sentences that name nothing: no name and none of ``facts``. After a grounded
    sentence, a small model's "They have been made into films in recent years." is about nothing the
    summary gives, so nothing can check it (names in the kept sentences are checked by :func:`unsupported`).

    >>> anchored("It is tense. Al Pacino is great. It is a drama at heart.", ["drama"])
    'Al Pacino is great. It is a drama at heart.'
    """
    low_facts = [f.lower() for f in facts if f]
    return " ".join(s for s in sentences(text) if NAME.search(s) or any(f in s.lower() for f in low_facts))


def names_item(reply: str, item: str) -> bool:
    """Whether ``reply`` names ``item``: its "Title (Year)", or its title as words of their own; a one-word
    title only with its year ("It has been popular" does not name It (2017); "Have you seen Heat?" does
    not name Heat (1995) either, where "Heat" may be the weather).

    >>> names_item("Have you seen It (2017)?", "It (2017)"), names_item("It has been popular.", "It (2017)")
    (True, False)
    >>> names_item("Have you seen the shining?", "The Shining (1980)"), names_item("The Shiningest.", "The Shining (1980)")
    (True, False)
    """
    low, title = reply.lower(), item.split(" (")[0].lower()
    if item.lower() in low:
        return True
    return len(title.split()) > 1 and re.search(rf"(?<!\w){re.escape(title)}(?!\w)", low) is not None


def check(reply: str, supported: str, item: str | None = None, facts: Iterable[str] = (), known: Container[str] | None = None) -> Grounding:
    """Check one reply against the turn's summary.

    Args:
        reply: What the user reads.
        supported: The text the turn's experts support (the summary: output, reason, what was asked).
        item: The item the turn is about (a recommendation's top item), if any.
        facts: True catalog values of ``item`` (genres, people, year) and the turn's reason.
        known: The catalog's item names in lower case, to find invented titles.

    >>> g = check("You might like Heat (1995), a crime movie. Find it on Netflix!", "Heat (1995) crime", "Heat (1995)", ["crime"])
    >>> g.claims, g.names_item, g.true_attribute, g.grounded
    (('Find it on Netflix!',), True, True, False)
    >>> check("Heat (1995) director: Michael Mann", "Heat (1995) director: Michael Mann").field_dump
    True
    >>> check("Have you seen Heat (1995)?", "Heat (1995)", "Heat (1995)", ["1995"]).true_attribute  # its title's year
    False
    """
    said = sentences(reply)
    low = reply.lower()
    names = bool(item) and names_item(reply, item or "")
    rest = low.replace((item or "").lower(), " ") if item else low  # the title's own year is no attribute
    true = names and any(f and f.lower() in rest for f in facts)
    return Grounding(
        claims=tuple(s for s in said if unsupported(s, supported)),
        invented=tuple(invented_titles(reply, known)) if known is not None else (),
        names_item=names,
        true_attribute=true,
        field_dump=bool(FIELD_DUMP.search(reply)),
        sentences=len(said),
    )
