"""Entity linking: items, genres and people named in free text, resolved against the catalog.

The linker scans word n-grams (longest first, non-overlapping) against indices of catalog titles,
genres and people. A one-word title is linked only when it is capitalised in the text and at least
four letters long, since titles such as "It" or "Us" are also common words. A mention in a sentence
with a negation before it ("I don't like horror") is a dislike. :meth:`EntityLinker.named` checks a
given ranking against a text more leniently, for the items a conversation must not be offered again.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from crsdata.catalog import Catalog, split_title

WORD = re.compile(r"[A-Za-z0-9']+")
YEAR_IN_PARENS = re.compile(r"\((\d{4})\)")
#: Words before a "(year)" tried as the start of a full "Title (Year)" name, the longest first.
FULL_NAME_WORDS = 16
NEGATION = re.compile(
    r"\b(not|never|no|don't|dont|doesn't|doesnt|didn't|didnt|hate|hated|dislike|disliked|can't stand|cant stand|isn't|isnt|aren't|wasn't|"
    r"won't|wont|can't do|cant do|nothing|without|avoid|skip|except)\b",
    re.I,
)
#: A sentence; "Mr. Deeds (2002)", "Love Potion No. 9 (1992)" or "Samuel L. Jackson" is not cut at the
#: abbreviation's or the initial's period.
SENTENCE = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|vs|No|Vol)\.|\b[A-Z]\.(?= [A-Z])|[^.!?\n])+[.!?]?")
GENRE_SYNONYMS = {
    "scary": "horror",
    "horror": "horror",
    "funny": "comedy",
    "comedies": "comedy",
    "romantic": "romance",
    "rom com": "romance",
    "romcom": "romance",
    "romcoms": "romance",
    "animated": "animation",
    "cartoon": "animation",
    "cartoons": "animation",
    "science fiction": "sci-fi",
    "scifi": "sci-fi",
    "sci fi": "sci-fi",
    "thrillers": "thriller",
    "documentaries": "documentary",
    "kids": "family",
    "superhero": "action",
    "action packed": "action",
    "suspense": "thriller",
    "westerns": "western",
    "musicals": "musical",
    "dramas": "drama",
}
MAX_NGRAM = 8
#: :meth:`EntityLinker.named`: a one-word title this long counts in any case (few common words are).
LONG_WORD = 8
#: A trailing parenthesis of a name: a year, or OpenDialKG's "(Romantic comedy Film)".
TRAILING_PARENS = re.compile(r"\s*\([^)]*\)\s*$")
#: What may end the text before a sentence's first word (a speaker label's colon too).
SENTENCE_END = re.compile(r"(?:^|[.!?:\n])\W*$")


def norm(text: str) -> str:
    """Lower-case words only: ``"The Shining!"`` -> ``"the shining"``."""
    return " ".join(WORD.findall(text.lower()))


@dataclass
class Mentions:
    """What a text (or a whole dialogue) names, split into likes and dislikes."""

    items: list[str] = field(default_factory=list)
    genres: list[str] = field(default_factory=list)
    people: list[str] = field(default_factory=list)
    disliked: list[str] = field(default_factory=list)
    ordered: list[str] = field(default_factory=list)  # every mention in text order, repeats kept

    def copy(self) -> Mentions:
        """An independent copy (the lists are new)."""
        return Mentions(**{f.name: list(getattr(self, f.name)) for f in fields(self)})

    def liked_entities(self) -> list[str]:
        """Items, genres and people, in order, without dislikes."""
        return [e for e in (*self.items, *self.genres, *self.people) if e not in self.disliked]

    def merge(self, other: Mentions) -> None:
        """Add another text's mentions (a later dislike overrides a like, and vice versa)."""
        for name in ("items", "genres", "people"):
            mine = getattr(self, name)
            mine.extend(x for x in getattr(other, name) if x not in mine)
        for x in other.disliked:
            if x not in self.disliked:
                self.disliked.append(x)
        for x in other.liked_entities():
            if x in self.disliked and x not in other.disliked:
                self.disliked.remove(x)
        self.ordered.extend(other.ordered)

    def as_dict(self) -> dict[str, list[str]]:
        """JSON-able form."""
        return {"items": self.items, "genres": self.genres, "people": self.people, "disliked": self.disliked}


LINK_MEMO = 1024  # texts whose mentions an EntityLinker keeps


class EntityLinker:
    """Links text to a dataset's catalog items, genres and people.

    Args:
        catalog: The item catalog (built for ``dataset``).
        dataset: Dataset name.
        popularity: Optional item -> count; breaks ties between same-title items.
    """

    def __init__(self, catalog: Catalog, dataset: str, popularity: dict[str, int] | None = None) -> None:
        catalog.ensure(dataset)
        self.catalog, self.dataset = catalog, dataset
        pop = popularity or {}
        self.names = {pk: name for pk, name in catalog._name_index(dataset).items()}
        self.full: dict[str, str] = {}
        titles: dict[str, list[str]] = defaultdict(list)
        for name in self.names.values():
            self.full[norm(name)] = name
            titles[norm(split_title(name)[0])].append(name)
        self.titles = {t: max(ns, key=lambda n: (pop.get(n, 0), n)) for t, ns in titles.items() if t}
        self.genres = {norm(g): g for g in catalog.attribute_values(dataset, "genre")}
        for syn, canon in GENRE_SYNONYMS.items():
            if norm(canon) in self.genres and norm(syn) not in self.genres:
                self.genres[norm(syn)] = self.genres[norm(canon)]
        people = {*catalog.attribute_values(dataset, "director"), *catalog.attribute_values(dataset, "cast")}
        if not people:  # a catalog without directors or cast (books): its writers are the people it knows
            people = set(catalog.attribute_values(dataset, "writer"))
        self.people = {norm(p): p for p in people if len(norm(p).split()) >= 2}
        # link() is pure and the experts of one turn link the same dialogue many times (the reranker's
        # bases, their preference filters): the last LINK_MEMO texts are kept. Written here because
        # functools.lru_cache would hand every caller the same mutable Mentions.
        self._memo: dict[str, Mentions] = {}
        self._memo_lock = threading.Lock()  # experts run in server threads: eviction must not race an insert

    def resolve_item(self, text: str) -> str | None:
        """The catalog item a name refers to: exact full name, exact title, else fuzzy (score >= 85)."""
        key = norm(text)
        if not key:
            return None
        if key in self.full:
            return self.full[key]
        if key in self.titles:
            return self.titles[key]
        hits = self.catalog.search_title(self.dataset, text, limit=1, min_score=85)
        return hits[0][0].name if hits else None

    def link(self, text: str) -> Mentions:
        """Mentions in one text."""
        with self._memo_lock:
            known = self._memo.get(text)
        if known is None:
            known = Mentions()
            for sentence in SENTENCE.findall(text):
                self._link_sentence(sentence, known)
            with self._memo_lock:
                if len(self._memo) >= LINK_MEMO:
                    self._memo.pop(next(iter(self._memo)))  # the oldest
                self._memo[text] = known
        return known.copy()

    def _link_sentence(self, sentence: str, out: Mentions) -> None:
        taken: list[tuple[int, int]] = []
        found: list[tuple[int, str, str]] = []  # (char position, kind, canonical)
        for m in YEAR_IN_PARENS.finditer(sentence):  # "I loved Heat (1995)": "Heat (1995)", not the film "Heat" of 1996
            starts = [w.start() for w in WORD.finditer(sentence, 0, m.start())][-FULL_NAME_WORDS:]
            for start in starts:  # the longest title first: "The Shining (1980)" before "Shining (1980)"
                name = self.full.get(norm(f"{sentence[start : m.start()]} ({m.group(1)})"))
                if name and not any(a <= start < b for a, b in taken):
                    found.append((start, "items", name))
                    taken.append((start, m.end()))
                    break
        words = [(m.start(), m.end(), m.group(0)) for m in WORD.finditer(sentence)]
        i = 0
        while i < len(words):
            hit = None
            for n in range(min(MAX_NGRAM, len(words) - i), 0, -1):
                start, end = words[i][0], words[i + n - 1][1]
                if any(a <= start < b for a, b in taken):
                    break
                key = " ".join(w[2].lower() for w in words[i : i + n])
                if key in self.people:
                    hit = (n, "people", self.people[key])
                elif key in self.genres:
                    hit = (n, "genres", self.genres[key])
                elif key in self.titles and (n >= 2 or (words[i][2][:1].isupper() and len(key) >= 4 and i > 0)):
                    if self._person_across(words, i, n):  # "I really like Mike Myers": the person, not "Like Mike"
                        continue
                    hit = (n, "items", self.titles[key])
                if hit:
                    found.append((start, hit[1], hit[2]))
                    taken.append((start, end))
                    break
            i += hit[0] if hit else 1
        # a negation inside a title says nothing: "I liked 10 Things I Hate About You (1999), but I'd prefer a crime movie"
        masked = sentence
        for (_, kind, _), (a, b) in zip(found, taken, strict=True):
            if kind == "items":
                masked = masked[:a] + " " * (b - a) + masked[b:]
        for pos, kind, name in sorted(found):
            out.ordered.append(name)
            bucket = getattr(out, kind)
            if name not in bucket:
                bucket.append(name)
            if NEGATION.search(masked[:pos]) and name not in out.disliked:
                out.disliked.append(name)

    def _person_across(self, words: list[tuple[int, int, str]], i: int, n: int) -> bool:
        """Whether a person's name starts inside the ``n`` words from ``i`` and ends after them."""
        return any(
            " ".join(w[2].lower() for w in words[j : j + m]) in self.people
            for j in range(i + 1, i + n)
            for m in range(i + n - j + 1, min(MAX_NGRAM, len(words) - j) + 1)
        )

    def named(self, text: str, items: Iterable[str]) -> set[str]:
        """The items among ``items`` that ``text`` names in a form :meth:`link` skips.

        :meth:`link` finds titles anywhere in free text, so for precision it skips titles over
        :data:`MAX_NGRAM` words, one-word titles that are numbers, lower-case or short, a one-word title
        opening a sentence, and every item of a title but the most mentioned. Checking a given list (a
        ranking about to be shown) can be more lenient, since a false match only keeps one item out of
        one conversation. Named here:

        - the full "Title (Year)", or a title over :data:`MAX_NGRAM` words, in any case;
        - a one-word title of :data:`LONG_WORD` letters or more, in any case ("caddyshack");
        - a title of several words in any case, or of two to four digits, outside a longer name ("X-Men"
          names every item of that title; "Star Wars: The Last Jedi" does not name "Star Wars"; "released
          2012" names the film "2012", as the corpora annotate it, but "Heat (2012)" does not);
        - any other one-word title as the catalog writes it ("Up", "XXX"), neither opening a sentence nor
          inside a longer name ("Wonder Woman" does not name "Wonder").

        >>> linker = EntityLinker.__new__(EntityLinker)
        >>> sorted(linker.named("caddyshack is a classic. I like 300 and Up.", ["Caddyshack (1980)", "300 (2007)", "Up (2009)"]))
        ['300 (2007)', 'Caddyshack (1980)', 'Up (2009)']
        >>> linker.named("It was fun, up to the end. I wonder if Wonder Woman (2017) is good.", ["It (2017)", "Up (2009)", "Wonder (2017)", "2017"])
        set()
        >>> sorted(linker.named("Do you watch x-men movies? Star Wars: The Last Jedi was ok", ["X-Men", "X-Men (2000)", "Star Wars"]))
        ['X-Men', 'X-Men (2000)']
        """
        words = f" {norm(text)} "
        out: set[str] = set()
        for item in items:
            bare, year = split_title(item)
            title = TRAILING_PARENS.sub("", bare)
            key = norm(title)
            if not key:
                continue
            if year is not None and f" {norm(item)} " in words:
                out.add(item)
            elif len(key.split()) > MAX_NGRAM or (key.isalpha() and len(key) >= LONG_WORD):
                if f" {key} " in words:
                    out.add(item)
            elif f" {key} " not in words or len(key) < 2 or (key.isdigit() and len(key) > 4):  # the cheap tests first
                continue
            elif _as_written(title, text, any_case=" " in key or key.isdigit()):  # "X-Men" names every "X-Men"
                out.add(item)
        return out

    def link_dialogue(self, user_texts: list[str]) -> Mentions:
        """Merged mentions over the user's utterances, in order."""
        total = Mentions()
        for text in user_texts:
            total.merge(self.link(text))
        return total


def _as_written(title: str, text: str, any_case: bool = False) -> bool:
    """Whether ``text`` has ``title`` (with its case unless ``any_case``) outside a longer name: no
    capitalised word or "(" just before it; no capitalised word, number, "(" or ":" just after it. A match
    opening a sentence counts only with ``any_case`` (a capitalised word there says nothing)."""
    words = r"[\W_]+".join(re.escape(w) for w in WORD.findall(title))
    core = f"(?i:{words})" if any_case else words
    for m in re.finditer(rf"(?<![\w'(-]){core}(?![\w'-])(?!\s*[(:])(?!\s+[A-Z0-9])", text):
        before = text[max(0, m.start() - 30) : m.start()]
        if re.search(r"[A-Z][\w']*:?\s+$", before):
            continue
        if any_case or not SENTENCE_END.search(before[-4:]):
            return True
    return False
