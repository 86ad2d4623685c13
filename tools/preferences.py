"""What the user stated, as one typed state, applied to any recommender's ranking.

A learned recommender reads the dialogue its own way: KBRD pools the linked entities, SASRec reads
them as a sequence, the retriever embeds the text. None of them treats "a drama from the 90s" as a
constraint, and none ranks every 1990s film, so the wish is lost unless one place enforces it. This
module is that place:

* :func:`fold` reads one utterance into the :class:`Preferences` stated so far (the catalog's genres
  and people through the entity linker, a person's part from the words before the name, writers when
  asked for; years, decades, recency words and audiences ("for the family") by rule). A later statement
  overrides an earlier one of its kind: after "something from the 90s", "actually, something newer"
  replaces the decade; a genre asked for in a new turn replaces the one asked before ("I'd prefer a
  comedy this time"), but one asked while turning down an offer refines it (after "a horror movie",
  "not those; a thriller": horror thrillers first).
* :func:`stated_first` ranks by them: what is disliked, named, seen or rejected is out (never
  relaxed); the hard constraints (the people asked for, the genres asked for, the year range) filter;
  when fewer than ``top_k`` items meet them all, they are relaxed in :data:`RELAX_ORDER` (the year
  range first, then the genres, the earliest asked first, the people last), so the items that meet
  the most come first, in the recommender's own order otherwise. It ranks the whole catalog when a
  constraint is stated, so a 1990s request reaches 1990s items that the learned ranker never ranks.
* One film is one item: the catalog's duplicate entries ("Titanic" / "Titanic (1997)") share one key
  (:attr:`tools.env.ExpertEnv.film_key`), a ranking never shows two entries of a film, and never an
  entry of a film the dialogue named.
* :func:`wish_phrase` says which stated wish an item meets ("a 1990s drama, as you asked").

A genre is a hard constraint only when the user asks for it (:data:`ASKING`: "any horror?", "I'd
prefer a comedy", "I'm in the mood for a drama"), or states a taste naming no item ("I'm into 90s
comedies", :func:`_wants`); a genre merely mentioned ("I loved that horror film") re-ranks nothing, as before (a liked genre as a ranking key lowered HIT on the corpora). The
people the user likes come first, as before (OpenDialKG KBRD .2338 -> .3154 on HIT@10).
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, TypedDict

from crsdata.schema import Role
from tools.dialogue import parse_dialogue
from tools.linking import SENTENCE, norm

if TYPE_CHECKING:
    from tools.env import ExpertEnv


class Preferences(TypedDict, total=False):
    """What the user has stated so far in a conversation (the graph's ``preferences``, checkpointed).

    Attributes:
        liked_items: Items the user liked.
        disliked_items: Items the user disliked.
        genres: Genres asked for (hard: an item of any of them; "comedy, action or drama" are asked together).
        liked_genres: Genres the user mentioned liking without asking for them, or asked for before naming
            films they liked (those say more): they rank nothing.
        lean: Genres wished for softly ("like X but lighter" -> comedy): they re-rank.
        disliked_genres: Genres the user does not want (never relaxed).
        people: People liked or asked for (an item with any of them first, more of them before fewer).
        roles: The part a person was asked for ("directed by" -> ``director``; ``cast``, ``writer``).
        disliked_people: People the user does not want (never relaxed).
        years: The year range asked for, ``[first, last]`` inclusive (``None`` for an open end).
        years_said: How the range was asked ("the 1990s", "recent", "before 2000"), for the reply.
        anchors: Items the user wants something like ("like Heat", "similar to Titanic").
        seen: Items the dialogue named (the user's or the assistant's): never recommended.
        rejected: Items recommended and turned down: never recommended again.
        offered: The items of the assistant's last turn (what a rejection refers to).
    """

    liked_items: list[str]
    disliked_items: list[str]
    genres: list[str]
    liked_genres: list[str]
    lean: list[str]
    disliked_genres: list[str]
    people: list[str]
    roles: dict[str, str]
    disliked_people: list[str]
    years: list[int | None] | None
    years_said: str
    anchors: list[str]
    seen: list[str]
    rejected: list[str]
    offered: list[str]


LIST_FIELDS = ("liked_items", "disliked_items", "genres", "liked_genres", "lean", "disliked_genres", "people",
               "disliked_people", "anchors", "seen", "rejected")  # fmt: skip
#: The most recent entries each list keeps (the graph's ``offered`` memory keeps more: nothing offered
#: comes back, whatever leaves ``seen``).
MEMORY = 20
#: Constraints relaxed when too few items meet them all, first relaxed first.
RELAX_ORDER = ("years", "genres", "people")

#: A sentence that asks for something now (a genre in it is a constraint, not a mention).
ASKING = re.compile(
    r"\?|\b(any|anything|something|some|looking for|look for|in the mood|mood for|recommend|suggest|suggestions?|prefer|"
    r"rather|instead|this time|want|wanna|need|give me|show me|how about|what about|maybe|perhaps|feel like|would like|"
    r"i'd like|id like|like to see|like to watch|like to read|i'd love|would love|love to see|please|can you|could you|i'm after|im after|"
    r"i am after|"
    r"do you have|got any|know any|only|just|a good)\b",
    re.I,
)
#: A sentence that states a taste for a kind of item ("I like horror movies from the 80s", "I'm into 90s
#: comedies", "a thriller would be great"): a wish when it names no item (:func:`_wants`); "I loved that
#: horror film, Get Out" names one and stays a mention. Present tense only: "I liked horror films" is a memory.
STATES = re.compile(
    r"\b(i (?:really |also |mostly |usually |just |do |kinda |kind of )?(?:like|love|enjoy|adore|dig|prefer|watch|fancy)|"
    r"i'?m (?:really |mostly |a big |a huge |big )?(?:into|fan of|after)|i am (?:really )?into|(?:big |huge )?fans? of|"
    r"favou?rites?|my (?:thing|jam|type|cup of tea)|i'?d enjoy|i would enjoy|would be (?:great|nice|good|perfect|fun|awesome|ideal)|"
    r"sounds? (?:good|great)|go for|big on|works? for me|i'?m up for|up for)\b",
    re.I,
)
#: An audience wish that names no genre ("something for the family?", "a movie I can watch with my kids"):
#: the catalog's family genre (and its kin, :data:`KINDRED`).
FAMILY = re.compile(
    r"\b(for (?:the |my |our )?(?:whole )?family|family[- ](?:friendly|movie|film|night|book)s?|whole family|"
    r"with (?:my|the|our) (?:kids|children|family|little ones|son|daughter)|for (?:my |the |our )?(?:kids|children|little ones)|"
    r"kid[- ]friendly|child[- ]friendly|children'?s (?:movie|film|book)s?|all ages)\b",
    re.I,
)
#: The words before a person's name that say their part ("directed by", "starring", "written by"); "by"
#: alone is a film's director and a book's writer (:func:`_roles`).
ROLE_CUES = (
    (re.compile(r"\b(written by|writer|screenwriter|screenplay by|scripted by|author|novels? by|books? by|penned by)\s*$", re.I), "writer"),
    (re.compile(r"\b(directed by|director|directors|filmmaker|helmed by|films? by|movies? by)\s*$", re.I), "director"),
    (re.compile(r"\b(starring|stars?|with|featuring|actor|actress|played by|acted by|has|in which)\s*$", re.I), "cast"),
    (re.compile(r"\bby\s*$", re.I), "by"),
)
#: A person asked for with one of these replaces the people asked before ("Something with Tom Hanks instead").
INSTEAD = re.compile(r"\b(instead|rather|this time|actually|now|switch|change)\b", re.I)
#: Words that ask for a writer: only then are writers looked for (the linker knows directors and cast).
WRITER_CUE = re.compile(r"\b(written|writer|screenwriter|screenplay|scripted|author|novels?|penned|writing|wrote)\b", re.I)
#: "like X", "similar to X": the user wants something like the item that follows.
ANCHOR = re.compile(r"\b(like|similar to|such as|in the vein of|along the lines of|reminds? me of|same as|as good as)\s*$", re.I)
#: A reply that turns down what the assistant just offered.
REJECTS = re.compile(
    r"\b(no|nope|nah|not (that|this|it|those|them|really|for me|interested)|(already|have|i've|ive) (seen|watched|read)|seen (it|that|them)|"
    r"watched (it|that|them)|read (it|that|them)|something else|anything else|another one|others?|don't like (it|that|them)|"
    r"didn't like (it|that|them)|dont like|not a fan|pass)\b",
    re.I,
)
#: "lighter", "darker": a soft genre wish relative to what was liked.
TONE = {r"\b(lighter|funnier|less (dark|serious|scary)|more fun|light ?hearted|feel[- ]good)\b": "comedy",
        r"\b(darker|scarier|creepier|more (scary|intense))\b": "horror"}  # fmt: skip

_DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                 "seventies": 1970, "eighties": 1980, "nineties": 1990}  # fmt: skip
_PART = r"(?:(early|mid|late)[- ]?)?"
_DECADE = re.compile(_PART + r"(?:the\s+)?(?:(1[89]\d0|20[0-2]0)'?s|'?(\d0)'?s|(" + "|".join(_DECADE_WORDS) + r"))\b", re.I)
_YEAR = r"(1[89]\d\d|20[0-2]\d)"
_BETWEEN = re.compile(rf"\b(?:between|from)\s+{_YEAR}\s+(?:and|to|-)\s+{_YEAR}\b", re.I)
_BEFORE = re.compile(rf"\b(?:before|earlier than|older than|prior to|pre-?|up to|until)\s*{_YEAR}\b", re.I)
_AFTER = re.compile(rf"\b(?:after|later than|newer than|post-?)\s*{_YEAR}\b", re.I)
_SINCE = re.compile(rf"\b(?:since|from)\s+{_YEAR}\s+(?:on|onwards?|or later|and later|or after)\b|\b(?:since)\s+{_YEAR}\b", re.I)
_IN_YEAR = re.compile(rf"\b(?:from|in|of|released in|came out in|made in)\s+{_YEAR}\b(?!\s*\))", re.I)
_NEWER = re.compile(r"\b(newer|more recent|more modern|less old|not (?:so|too|that|very) old|later ones?)\b", re.I)
_THIS_DECADE = re.compile(r"\b(this decade|the last (?:ten|10) years|the (?:last|past) decade)\b", re.I)
_OLDER = re.compile(r"\b(older|less recent|earlier one)\b", re.I)
_RECENT = re.compile(
    r"\b(recent|recently|newest|latest|modern|new releases?|brand new|current|last few years|last couple of years|these days|nowadays|lately|"
    r"(?:something|anything|stuff|ones?) new|new (?:movies?|films?|books?|ones?|stuff))\b",
    re.I,
)
_CLASSIC = re.compile(r"\b(classics?|oldies?|vintage|golden age|black and white|old (?:movie|film|book|one|stuff|school)s?)\b", re.I)
#: How many years back "recent" reaches from the catalog's newest year; a "classic" is before CLASSIC_BEFORE.
RECENT_YEARS = 5
CLASSIC_BEFORE = 1980
#: "Older movies" with nothing to be older than: before this year ("a classic" reaches back further).
OLDER_BEFORE = 2000


def _decade(m: re.Match[str]) -> tuple[int, int, str]:
    part, full, short, word = m.group(1), m.group(2), m.group(3), m.group(4)
    if full:
        start = int(full)
    elif short:
        start = int(short) + (2000 if int(short) < 30 else 1900)
    else:
        start = _DECADE_WORDS[word.lower()]
    lo, hi = {"early": (0, 3), "mid": (3, 6), "late": (6, 9)}.get((part or "").lower(), (0, 9))
    said = f"the {part.lower() + ' ' if part else ''}{start}s"
    return start + lo, start + hi, said


def year_range(text: str, newest: int, reference: tuple[int | None, int | None] | None) -> tuple[int | None, int | None, str] | None:
    """The year range a user utterance asks for, or ``None``.

    Args:
        text: The utterance.
        newest: The catalog's newest year ("recent" reaches :data:`RECENT_YEARS` back from it).
        reference: The years "newer" and "older" are relative to: the range asked before, else the
            years of what the conversation offered or the user liked (``(earliest, latest)``).

    Returns:
        ``(first, last, how it was said)``, either end ``None`` when open.

    >>> year_range("Any horror movies from the 90s?", 2018, None)
    (1990, 1999, 'the 1990s')
    >>> year_range("something from the late eighties", 2018, None)
    (1986, 1989, 'the late 1980s')
    >>> year_range("Actually, something newer", 2018, (1990, 1999))
    (2000, None, 'newer')
    >>> year_range("anything before 2000?", 2018, None), year_range("Something recent please", 2018, None)
    ((None, 1999, 'before 2000'), (2014, None, 'recent'))
    >>> year_range("Maybe a classic?", 2018, None), year_range("I loved Heat (1995)", 2018, None)
    ((None, 1979, 'a classic'), None)
    """
    text = re.sub(r"\([^)]*\)", " ", text)  # a title's "(1995)" is no wish
    if m := _BETWEEN.search(text):
        a, b = sorted((int(m.group(1)), int(m.group(2))))
        return a, b, f"from {a} to {b}"
    if m := _BEFORE.search(text):
        return None, int(m.group(1)) - 1, f"before {m.group(1)}"
    if m := _SINCE.search(text):
        y = m.group(1) or m.group(2)
        return int(y), None, f"since {y}"
    if m := _AFTER.search(text):
        return int(m.group(1)) + 1, None, f"after {m.group(1)}"
    if m := _DECADE.search(text):
        return _decade(m)
    if m := _IN_YEAR.search(text):
        return int(m.group(1)), int(m.group(1)), f"from {m.group(1)}"
    lo_ref, hi_ref = reference or (None, None)
    if _NEWER.search(text):
        if hi_ref is not None:
            return hi_ref + 1, None, "newer"
        return newest - RECENT_YEARS + 1, None, "recent"
    if _OLDER.search(text):
        if lo_ref is not None:
            return None, lo_ref - 1, "older"
        if _CLASSIC.search(text):  # "something older, a real classic"
            return None, CLASSIC_BEFORE - 1, "a classic"
        return None, OLDER_BEFORE - 1, "older"
    if m := _THIS_DECADE.search(text):
        return newest - 9, None, "from the last ten years"
    if _RECENT.search(text):
        return newest - RECENT_YEARS + 1, None, "recent"
    if _CLASSIC.search(text):
        return None, CLASSIC_BEFORE - 1, "a classic"
    return None


#: A sentence that calls an item a classic ("that is a classic!", "another classic") asks for no years.
_DESCRIBES = re.compile(
    r"\b(is|was|are|were|'s|another|the)\s+(?:a\s+|an\s+)?(?:real\s+|true\s+|total\s+|great\s+|good\s+)?classics?\b", re.I
)


def asked_years(
    text: str,
    newest: int,
    reference: tuple[int | None, int | None] | None,
    names_item: Callable[[str], bool] | None = None,
) -> tuple[int | None, int | None, str] | None:
    """The year range a user utterance *asks* for: :func:`year_range` of its last sentence that wants
    something (:func:`_wants`) and does not merely call an item a classic. "It was released in 2018" and
    "that is a classic!" ask for nothing; "Any from the 80s?" and "I enjoy 80s slasher movies." do.

    Args:
        text: The utterance.
        newest: The catalog's newest year.
        reference: What "newer" and "older" compare with (:func:`year_range`).
        names_item: Whether a sentence names a catalog item (a taste stated beside a title is a mention);
            ``None``: no sentence does.

    >>> asked_years("It was released in 2018. Any good ones from the 80s?", 2019, None)
    (1980, 1989, 'the 1980s')
    >>> asked_years("I enjoy 80s slasher movies.", 2019, None), asked_years("Hi yes, that is a classic! Any others?", 2019, None)
    ((1980, 1989, 'the 1980s'), None)
    """
    found = None
    for sentence in _sentences(text):
        if _wants(sentence, names_item) and not _DESCRIBES.search(sentence):
            found = year_range(sentence, newest, reference) or found
    return found


_PAST = re.compile(r"\b(was|were|saw|seen|watched|had|did|went|got|thought|found)\b|\b\w{3,}ed\b", re.I)


def _wants(sentence: str, names_item: Callable[[str], bool] | None = None) -> bool:
    """Whether a user sentence wants something now: it asks (:data:`ASKING`), or it states a taste
    (:data:`STATES`) or is a short fragment ("a horror film from the 1980s"), naming no item and in
    the present tense.

    >>> [_wants(s) for s in ("Any comedies?", "I'm into 90s comedies.", "a horror film from 1980s", "I loved that horror film.")]
    [True, True, True, False]
    """
    if ASKING.search(sentence):
        return True
    if names_item is not None and names_item(sentence):
        return False
    fragment = len(WORDS.findall(sentence)) <= 6 and not _SUBJECT.search(sentence)  # "a horror film from 1980s", not "That's war."
    return bool(STATES.search(sentence) or fragment) and not _PAST.search(sentence)


WORDS = re.compile(r"[\w']+")
_SUBJECT = re.compile(r"\b(i|i'm|im|you|we|he|she|it|it's|they|that|that's|thats|this|those|these|there)\b", re.I)


def empty() -> Preferences:
    """A conversation's preferences before anything is said."""
    return Preferences(**{f: [] for f in LIST_FIELDS}, roles={}, years=None, years_said="", offered=[])  # type: ignore[typeddict-item]


def _add(values: list[str], new: Iterable[str]) -> list[str]:
    return [*values, *(v for v in dict.fromkeys(new) if v not in values)]


def _drop(values: list[str], gone: Iterable[str]) -> list[str]:
    out = set(gone)
    return [v for v in values if v not in out]


def fold(env: ExpertEnv, prefs: Preferences, role: Role, text: str) -> Preferences:
    """``prefs`` after one more utterance (a new object; ``prefs`` is not changed).

    A user utterance is parsed into the state; an assistant utterance records what it offered
    (the items it names), so that "seen it" or "no, something else" next rejects them.
    """
    copied = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in prefs.items()}
    out: Preferences = {**empty(), **copied}  # type: ignore[typeddict-item]
    if role != "user":
        named = env.linker.link(text).items
        out["seen"] = _add(out["seen"], named)
        out["offered"] = named
        return out
    m = env.linker.link(text)

    def names_item(sentence: str) -> bool:  # noqa: ARG001 - an utterance naming items: only what it asks for filters
        return bool(m.items)  # the linker links sentence by sentence: a sentence names no item the utterance does not

    disliked = set(m.disliked)
    items = [i for i in m.items if i not in disliked]
    genres = [g for g in m.genres if g not in disliked]
    family = env.linker.genres.get("family") or env.linker.genres.get("animation")
    audience = bool(family) and any(FAMILY.search(x) and (ASKING.search(x) or not names_item(FAMILY.sub(" ", x))) for x in _sentences(text))
    if audience:
        genres = _add(genres, [family])  # type: ignore[list-item]
    writers = _writers(env, text) if WRITER_CUE.search(text) else []
    people = [p for p in _add(m.people, writers) if p not in disliked]
    out["seen"] = _add(out["seen"], m.items)
    rejecting = bool(out["offered"]) and bool(REJECTS.search(text))  # the user turns down what was just offered
    if rejecting:
        out["rejected"] = _add(out["rejected"], out["offered"])
    out["offered"] = []
    out["liked_items"] = _add(_drop(out["liked_items"], disliked), items)
    out["disliked_items"] = _add(_drop(out["disliked_items"], items), [i for i in m.items if i in disliked])
    out["anchors"] = _add(out["anchors"], _anchors(text, items))
    asked = [g for g in genres if (audience and g == family) or _asked(text, g, names_item)]
    if asked and INSTEAD.search(text):  # "I'd prefer a comedy this time": a change of mind, nothing before counts
        out["genres"], out["lean"] = asked, []
    elif asked:  # a genre asked for now replaces the genres asked before; turning down an offer, the user refines:
        if rejecting:  # "not those; a thriller" after "a horror movie": horror thrillers first
            out["lean"] = _add(out["lean"], [g for g in out["genres"] if g not in asked])
        out["genres"] = asked
    elif items and not rejecting:  # liked films named after a genre was asked say more than it did: it no longer filters
        out["liked_genres"] = _add(out["liked_genres"], out["genres"])
        out["genres"] = []
    out["genres"] = _drop(out["genres"], disliked)
    out["liked_genres"] = _add(_drop(out["liked_genres"], disliked), [g for g in genres if g not in asked])
    out["disliked_genres"] = _add(_drop(out["disliked_genres"], genres), [g for g in m.genres if g in disliked])
    for pattern, genre in TONE.items():
        if re.search(pattern, text, re.I) and (canon := env.linker.genres.get(genre)):
            out["lean"] = _add(out["lean"], [canon])
    kept = [] if people and INSTEAD.search(text) else _drop(out["people"], disliked)  # "something with B instead": not A
    out["people"] = _add(kept, people)
    out["roles"] = {p: r for p, r in {**(out.get("roles") or {}), **_roles(env, text, people)}.items() if p in out["people"]}
    out["disliked_people"] = _add(_drop(out["disliked_people"], people), [p for p in m.people if p in disliked])
    said = asked_years(text, env.newest_year, _reference(env, out), names_item)
    if said is not None:
        out["years"], out["years_said"] = [said[0], said[1]], said[2]
    for name in LIST_FIELDS:  # a long conversation's state stays bounded: the latest statements are kept
        out[name] = out[name][-MEMORY:]  # type: ignore[literal-required]
    return out


def _asked(text: str, genre_value: str, names_item: Callable[[str], bool] | None = None) -> bool:
    """Whether a sentence naming ``genre_value`` wants it (:func:`_wants`): "Any comedies?", "Comedy.",
    "I'm into 90s comedies"; not "I loved Get Out, a great horror movie"."""
    return any(
        any(w in sentence.lower() for w in _genre_words(genre_value)) and _wants(sentence, names_item) for sentence in _sentences(text)
    )


def _sentences(text: str) -> list[str]:
    """``text`` split after ".", "!" or "?" and a space (what a wish is looked for in), but not after an
    initial ("Samuel L. Jackson") or an abbreviation ("Mr. Deeds").

    >>> _sentences("Anything with Samuel L. Jackson? Thanks. Mr. Deeds was fun.")
    ['Anything with Samuel L. Jackson?', 'Thanks.', 'Mr. Deeds was fun.']
    """
    return [m.group(0).strip() for m in SENTENCE.finditer(text) if m.group(0).strip()]


def _genre_words(genre_value: str) -> list[str]:
    from tools.linking import GENRE_SYNONYMS

    low = genre_value.lower()
    return [low, *(s for s, c in GENRE_SYNONYMS.items() if c == low)]


def _anchors(text: str, items: list[str]) -> list[str]:
    """The liked items of ``text`` that a "like ..." or "similar to ..." introduces."""
    low = text.lower()
    out = []
    for item in items:
        title = item.split(" (")[0].lower()
        at = low.find(title)
        if at > 0 and ANCHOR.search(low[:at]):
            out.append(item)
    return out


def _roles(env: ExpertEnv, text: str, people: list[str]) -> dict[str, str]:
    """The part the user asked each person for, from the words before their name (:data:`ROLE_CUES`):
    "directed by A" -> director, "starring B" -> cast, "written by C" -> writer, "by D" -> a film's
    director or a book's writer. A person named without a cue gets no part (any part meets the wish)."""
    low = text.lower()
    out = {}
    for person in people:
        at = low.find(person.lower())
        if at <= 0:
            continue
        before = low[max(0, at - 40) : at]
        for cue, role in ROLE_CUES:
            if cue.search(before):
                out[person] = role if role != "by" else ("writer" if env.category == "book" else "director")
                break
    return out


def _writers(env: ExpertEnv, text: str) -> list[str]:
    """The catalog's writers named in ``text`` (the linker knows directors and cast only)."""
    words = norm(text).split()
    index = env.writers
    return list(dict.fromkeys(index[k] for n in (4, 3, 2) for i in range(len(words) - n + 1) if (k := " ".join(words[i : i + n])) in index))


def _reference(env: ExpertEnv, prefs: Preferences) -> tuple[int | None, int | None] | None:
    """What "newer" and "older" compare with: the range asked before, else the years of the items
    liked ("more recent" after The Babadook (2014) and Get Out (2017) is after 2017)."""
    if prefs.get("years"):
        lo, hi = prefs["years"]  # type: ignore[misc]
        return lo, hi
    years = [y for i in prefs.get("liked_items") or [] if (y := env.year_of.get(i))]
    return (min(years), max(years)) if years else None


def of_dialogue(env: ExpertEnv, dialogue_context: str) -> Preferences:
    """The preferences a formatted dialogue states (its utterances folded in order). Memoised per text:
    the experts of one turn read the same dialogue many times. Do not change the returned value."""
    with _MEMO_LOCK:
        known = _MEMO.get((id(env), dialogue_context))
    if known is not None:
        return known
    prefs = empty()
    for role, text in parse_dialogue(dialogue_context):
        if text.startswith("(earlier) "):  # the bounded summary of the user's words that left the window
            text = text[len("(earlier) ") :]
        prefs = fold(env, prefs, role, text)
    with _MEMO_LOCK:  # experts run in server threads: an eviction must not race an insert
        if len(_MEMO) >= MEMO_SIZE:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[(id(env), dialogue_context)] = prefs
    return prefs


MEMO_SIZE = 256
_MEMO: dict[tuple[int, str], Preferences] = {}
_MEMO_LOCK = threading.Lock()


# ---- ranking by them -------------------------------------------------------------------------------


def constraints(env: ExpertEnv, prefs: Preferences) -> list[tuple[str, AbstractSet[str]]]:
    """The hard constraints of ``prefs``, most important first (the reverse of :data:`RELAX_ORDER`):
    ``(kind, the items that meet it)``."""
    out: list[tuple[str, AbstractSet[str]]] = []
    people = prefs.get("people") or []
    if people:
        roles = prefs.get("roles") or {}
        out.append(("people", frozenset().union(*(_items_of(env, p, roles.get(p)) for p in people))))
    genres = [k for g in prefs.get("genres") or [] for k in kindred(env, g)]
    if genres:  # "comedy, action or drama": any of the genres asked for together
        out.append(("genres", frozenset().union(*(env.items_by_genre.get(g, frozenset()) for g in genres))))
    if prefs.get("years"):
        lo, hi = prefs["years"]  # type: ignore[misc]
        out.append(("years", env.items_between(lo, hi)))
    return out


def _items_of(env: ExpertEnv, person: str, role: str | None) -> frozenset[str]:
    """The items of ``person``, in ``role`` when one was asked ("directed by"), else in any."""
    items = env.items_by_person.get(person, frozenset())
    if role is None:
        return items
    in_role = frozenset(i for i in items if person in env.item_attributes.get(i, {}).get(role, ()))
    return in_role or items  # a part the catalog never gives them: any of their items


#: Genres a catalog labels so narrowly that their kin also meet the wish: ReDial labels Coco, Frozen and
#: Moana "animation", not "family", so "a movie for my kids" would miss every one of them (books: children's
#: literature).
KINDRED = {"family": ("animation", "children's literature")}


def kindred(env: ExpertEnv, genre: str) -> list[str]:
    """``genre`` and the catalog's genres that also meet a wish for it (:data:`KINDRED`)."""
    kin = (env.linker.genres.get(norm(k)) for k in KINDRED.get(norm(genre), ()))
    return [genre, *(k for k in kin if k and k != genre)]


def excluded(env: ExpertEnv, prefs: Preferences) -> tuple[set[str], set[str]]:
    """``(items out, film keys out)``: disliked genres and people, disliked and rejected items, and every
    entry of a film the dialogue named."""
    items = env.items_with_any({*(prefs.get("disliked_genres") or []), *(prefs.get("disliked_people") or [])})
    films = {
        env.film_key.get(i, i) for i in (*(prefs.get("seen") or []), *(prefs.get("rejected") or []), *(prefs.get("disliked_items") or []))
    }
    return items, films


def stated_first(
    env: ExpertEnv,
    dialogue_context: str,
    rank: Callable[[int], list[str]],
    top_k: int,
    prefs: Preferences | None = None,
    exclude_named: bool = True,
) -> list[str]:
    """The top ``top_k`` of a ranking, after what the user stated (the module docstring).

    Args:
        env: The dataset's environment.
        dialogue_context: The dialogue so far, one "User: ..." or "Assistant: ..." line per utterance.
        rank: ``n -> the recommender's n best items``, best first; asked for a few more than ``top_k``
            when the user stated no constraint, else for the whole catalog.
        top_k: How many items to return.
        prefs: The preferences (the graph's state); parsed from ``dialogue_context`` when ``None``.
        exclude_named: Leave out every entry of a film the dialogue named (``False``: the published
            protocol's ranking, which may rank them).

    Returns:
        Items meeting the most hard constraints first (relaxed in :data:`RELAX_ORDER`), those with
        more liked people and soft genres next, otherwise in the recommender's order; one entry a film.
    """
    prefs = of_dialogue(env, dialogue_context) if prefs is None else prefs
    hard = [meets for _, meets in constraints(env, prefs)]
    banned, films = excluded(env, prefs)
    if not exclude_named:
        films = {env.film_key.get(i, i) for i in (*(prefs.get("rejected") or []), *(prefs.get("disliked_items") or []))}
    liked = Counter(i for p in prefs.get("people") or [] for i in env.items_by_person.get(p, ()))  # item -> liked people it has
    # a genre a kin also meets ("family": animation) ranks its own items first among those meeting the wish
    exact = [g for g in prefs.get("genres") or [] if norm(g) in KINDRED]
    soft = Counter(i for g in [*(prefs.get("lean") or []), *exact] for i in env.items_by_genre.get(g, ()))
    rankable, key_of = env.item_attributes, env.film_key
    full = bool(hard or banned or liked or soft)
    margin = top_k + 2 * len(films) + 10
    ranking = rank(len(rankable) if full else margin)
    # one pass over the ranking: each item to the bucket of the constraints it fails (a tuple of 0/1, most
    # important first, so sorted buckets are the relaxation order); within a bucket (-liked people, -soft
    # genres, position). Items with no soft key arrive in position order, so each bucket keeps top_k of them.
    buckets: dict[tuple[int, ...], list[tuple[int, int, int, str]]] = {}
    plain: dict[tuple[int, ...], int] = {}
    shown: set[str] = set()
    best = tuple(0 for _ in hard)
    for position, name in enumerate(ranking):
        if name not in rankable or name in banned:
            continue
        key = key_of.get(name, name)
        if key in films or key in shown:  # one film, one item
            continue
        shown.add(key)
        tier = tuple(0 if name in meets else 1 for meets in hard)
        people, tone = liked.get(name, 0), soft.get(name, 0)
        if people or tone:
            buckets.setdefault(tier, []).append((-people, -tone, position, name))
        elif plain.get(tier, 0) < top_k:
            plain[tier] = plain.get(tier, 0) + 1
            buckets.setdefault(tier, []).append((0, 0, position, name))
            if not (liked or soft) and tier == best and plain[tier] >= top_k:
                break  # nothing later can rank above these
    out: list[str] = []
    for tier in sorted(buckets):
        out += [name for *_, name in sorted(buckets[tier])[: top_k - len(out)]]
        if len(out) >= top_k:
            break
    if not full and len(out) < top_k and len(ranking) >= margin:  # duplicates and named films ate the margin
        return stated_first(env, dialogue_context, lambda n: rank(max(n, len(rankable))), top_k, prefs, exclude_named)
    return out


def honour(env: ExpertEnv, prefs: Preferences, items: list[str]) -> list[str]:
    """A fused or filtered ranking re-tiered by ``prefs`` (stable within a tier), without what is out and
    without a film's second entry: what the graph applies to the final ranking."""
    return stated_first(env, "", lambda n: items[:n], len(items), prefs)


# ---- saying which wish an item meets ---------------------------------------------------------------


def unmet(env: ExpertEnv, prefs: Preferences, item: str) -> list[str]:
    """The kinds of hard constraint ``item`` does not meet (empty: it meets every one)."""
    return [kind for kind, meets in constraints(env, prefs) if item not in meets]


def wish_phrase(env: ExpertEnv, prefs: Preferences, item: str | None = None) -> str:
    """The asked-for wishes as a noun phrase ('' if none), restricted to those ``item`` meets when given.

    >>> from types import SimpleNamespace as NS
    >>> env = NS(category="movie", people_of={}, items_between=lambda lo, hi: {"Heat (1995)"}, genres_of=lambda i: {"crime"})
    >>> wish_phrase(env, {"genres": ["crime"], "years": [1990, 1999], "years_said": "the 1990s"}, "Heat (1995)")
    'a 1990s crime movie'
    >>> wish_phrase(env, {"genres": ["drama"], "years": [None, 1999], "years_said": "before 2000"})
    'a drama movie released before 2000'
    """
    genres = list(prefs.get("genres") or [])
    people = list(prefs.get("people") or [])
    years = prefs.get("years")
    if item is not None:
        genres = [g for g in genres if g in env.genres_of(item)]
        people = [p for p in people if p in env.people_of.get(item, frozenset())]
        if years and item not in env.items_between(years[0], years[1]):
            years = None
    said = (prefs.get("years_said") or "") if years else ""
    adjective = (
        said[4:]
        if said.startswith("the ")
        else {"recent": "recent", "newer": "newer", "older": "older", "a classic": "classic"}.get(said, "")
    )
    suffix = "" if adjective or not said else (f" {said}" if said.startswith("from ") else f" released {said}")
    if not (genres or people or said):
        return ""
    joined = (" and " if item is not None else " or ").join(g.lower() for g in genres)  # the item has each; a wish is any
    words = " ".join(w for w in (adjective, joined, env.category) if w)
    phrase = f"{words}{suffix}{_people_phrase(env, people, item)}"
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


def _people_phrase(env: ExpertEnv, people: list[str], item: str | None) -> str:
    """ " with A", or by their part in ``item``: " directed by A", " written by B", " by B" (a book's writer).

    >>> from types import SimpleNamespace as NS
    >>> env = NS(category="movie", item_attributes={"Heat (1995)": {"director": {"Michael Mann"}, "cast": {"Al Pacino"}}})
    >>> _people_phrase(env, ["Michael Mann", "Al Pacino"], "Heat (1995)"), _people_phrase(env, ["Al Pacino"], None)
    (' directed by Michael Mann with Al Pacino', ' with Al Pacino')
    >>> env.item_attributes["Heat (1995)"]["writer"] = {"Michael Mann"}
    >>> _people_phrase(env, ["Michael Mann"], "Heat (1995)")
    ' written and directed by Michael Mann'
    """
    if not people:
        return ""
    if item is None:
        return f" with {' and '.join(people)}"
    attrs = env.item_attributes.get(item, {})
    verb = {"director": "directed by", "writer": "by" if env.category == "book" else "written by"}
    both = [p for p in people if p in attrs.get("director", ()) and p in attrs.get("writer", ())]
    parts = [f" written and directed by {' and '.join(both)}"] if both else []
    parts += [f" {verb[role]} {' and '.join(p for p in people if p in attrs.get(role, ()) and p not in both)}"
              for role in ("director", "writer") if any(p in attrs.get(role, ()) and p not in both for p in people)]  # fmt: skip
    parted = {p for role in ("director", "writer") for p in people if p in attrs.get(role, ())}
    rest = [p for p in people if p not in parted]
    return "".join(parts) + (f" with {' and '.join(rest)}" if rest else "")
