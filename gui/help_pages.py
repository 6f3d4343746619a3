"""The help pages (resources/help/*.html) as a library: each page's title, keywords, text, links and
anchors; the contents in the order the start page lists them; the keyword index; a ranked search.

The index is made of the keywords each page declares (``<meta name="keywords" content="a, b">``),
so it cannot drift from the pages. No Qt here: the help window shows what this finds, and the
tests check the pages (every page listed, every link resolving) through it.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

HELP_DIR = Path(__file__).resolve().parent.parent / "resources" / "help"
START = "index"                      # the start page: its links, in order, are the contents
_WORD = re.compile(r"\w+")
# Tags that do not break a word: the text on either side runs on (<b>Del</b>ete, <code>x</code>).
_INLINE = frozenset({"a", "b", "i", "em", "strong", "code", "tt", "small", "span", "sub", "sup"})
_SKIPPED = frozenset({"style", "script", "title"})


def words(text: str) -> list[str]:
    """``text`` as lower-case words: what the search compares."""
    return _WORD.findall(text.lower())


def matches(word: str, term: str) -> bool:
    """Does a search ``term`` find ``word``? The whole word, or its start for terms of four letters or
    more ("quota" finds "quotas"; "spa" does not find "space")."""
    return word == term or (len(term) >= 4 and word.startswith(term))


@dataclass(frozen=True)
class HelpPage:
    """One page: ``topic`` is its file name without ``.html`` (what F1 asks for)."""

    topic: str
    title: str
    keywords: tuple[str, ...]
    text: str                              # the body as plain text
    links: tuple[str, ...]                 # every href, as written
    anchors: frozenset[str] = frozenset()  # ids and names a link may point at (#fragment)
    counts: Counter[str] = field(default_factory=Counter, compare=False, repr=False)


class _PageParser(HTMLParser):
    """Collects what ``HelpPage`` holds from one file."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.keywords: list[str] = []
        self.links: list[str] = []
        self.anchors: set[str] = set()
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "meta" and values.get("name", "").lower() == "keywords":
            self.keywords += [k.strip() for k in values.get("content", "").split(",") if k.strip()]
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        for name in ("id", "name"):
            if values.get(name) and tag != "meta":
                self.anchors.add(values[name])
        if tag in _SKIPPED:
            self._skipping.append(tag)
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        elif tag not in _INLINE:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if self._skipping == ["title"]:
            self.title += data
        elif not self._skipping:
            self.parts.append(data)


def read_page(path: Path) -> HelpPage:
    """Parse one help file."""
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    text = re.sub(r"\s+", " ", "".join(parser.parts)).strip()
    title = re.sub(r"\s+", " ", parser.title).strip() or path.stem
    return HelpPage(topic=path.stem, title=title, keywords=tuple(parser.keywords), text=text,
                    links=tuple(parser.links), anchors=frozenset(parser.anchors), counts=Counter(words(text)))


@dataclass(frozen=True)
class SearchHit:
    """A page the search found, with its score (higher first) and the words to mark in it."""

    topic: str
    title: str
    score: float
    terms: tuple[str, ...]


class HelpLibrary:
    """Every page of a help folder: contents, index, search and the links between them."""

    def __init__(self, pages: dict[str, HelpPage]) -> None:
        self.pages = pages

    @classmethod
    def load(cls, folder: Path = HELP_DIR) -> HelpLibrary:
        return cls({path.stem: read_page(path) for path in sorted(folder.glob("*.html"))})

    # -- contents and links ----------------------------------------------------------------
    @staticmethod
    def link_target(href: str) -> tuple[str, str] | None:
        """(topic, fragment) of a link to a help page; None for a link that leaves the help."""
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            return None
        path = parts.path
        if path and not path.endswith(".html"):
            return None
        return (Path(path).stem if path else "", parts.fragment)

    def contents(self) -> list[HelpPage]:
        """The start page, then the pages it links to, in its order (each once)."""
        start = self.pages.get(START)
        if start is None:
            return list(self.pages.values())
        order = [START]
        for href in start.links:
            target = self.link_target(href)
            if target and target[0] in self.pages and target[0] not in order:
                order.append(target[0])
        return [self.pages[topic] for topic in order]

    def broken_links(self) -> list[str]:
        """Every link that does not lead to a page (and its anchor), as 'page.html: href'."""
        broken = []
        for page in self.pages.values():
            for href in page.links:
                target = self.link_target(href)
                topic, fragment = target if target else ("", "")
                topic = topic or page.topic
                missing = topic not in self.pages or (fragment and fragment not in self.pages[topic].anchors)
                if target is None or missing:
                    broken.append(f"{page.topic}.html: {href}")
        return broken

    # -- the index -------------------------------------------------------------------------
    def index(self, text: str = "") -> list[tuple[str, list[HelpPage]]]:
        """Keywords containing ``text`` (any case), alphabetically, each with its pages in contents order."""
        order = {page.topic: i for i, page in enumerate(self.contents())}
        found: dict[str, tuple[str, list[HelpPage]]] = {}
        wanted = text.strip().lower()
        for page in self.pages.values():
            for keyword in page.keywords:
                key = keyword.lower()
                if wanted in key:
                    pages = found.setdefault(key, (keyword, []))[1]
                    if page not in pages:
                        pages.append(page)
        for _shown, pages in found.values():
            pages.sort(key=lambda p: order.get(p.topic, len(order)))
        return [found[key] for key in sorted(found)]

    # -- search ----------------------------------------------------------------------------
    def search(self, query: str) -> list[SearchHit]:
        """Pages holding every word of ``query`` (see ``matches``), best first.

        A page scores for each word by how often it occurs (damped, so a long page does not win
        by length), much more when the word is in its title or keywords, and more again when the
        words stand together as typed ("smart host")."""
        terms = tuple(dict.fromkeys(words(query)))
        if not terms:
            return []
        phrase = re.compile(r"\b" + r"\W+".join(map(re.escape, terms)), re.IGNORECASE) if len(terms) > 1 else None
        hits = []
        for page in self.pages.values():
            title, keywords = words(page.title), words(" ".join(page.keywords))
            score = 0.0
            for term in terms:
                count = sum(n for word, n in page.counts.items() if matches(word, term))
                if not count:
                    break
                score += 1 + math.log(count)
                score += 4 * sum(1 for w in title if matches(w, term))
                score += 2 * sum(1 for w in keywords if matches(w, term))
            else:
                if phrase is not None:
                    together = len(phrase.findall(page.text))
                    score += 3 * (1 + math.log(together)) if together else 0
                    score += 6 if phrase.search(" ".join(page.keywords)) else 0
                hits.append(SearchHit(page.topic, page.title, round(score, 3), terms))
        hits.sort(key=lambda h: (-h.score, h.title.lower()))
        return hits
