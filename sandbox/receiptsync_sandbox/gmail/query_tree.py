"""The searchable view of a message (SearchDoc) and the query tree that Gmail search (`query.py`)
compiles a `q` string into: each node matches a SearchDoc. Pure."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .text import contains_phrase, normalize, tokenize


# ---------------------------------------------------------------- the searchable view of a message


@dataclass(frozen=True)
class SearchDoc:
    """What search can see of one message; built once per message by the mailbox."""

    internal_ms: int
    size: int
    labels: frozenset[str]
    fields: Mapping[str, tuple[str, ...]]  # field name -> word tokens
    filenames: tuple[str, ...]  # lower-cased attachment file names
    words: frozenset[str] = field(default=frozenset())  # every token, to reject cheaply

    @classmethod
    def build(cls, *, internal_ms: int, subject: str = "", sender: str = "", to: str = "", cc: str = "",
              bcc: str = "", body: str = "", filenames: Iterable[str] = (), labels: Iterable[str] = ("INBOX",),
              size: int = 0, message_id: str = "", list_id: str = "") -> "SearchDoc":
        names = tuple(name for name in filenames if name)
        fields = {
            "subject": tokenize(subject), "from": tokenize(sender), "to": tokenize(to), "cc": tokenize(cc),
            "bcc": tokenize(bcc), "body": tokenize(body), "filename": tokenize("\n".join(names)),
            "rfc822msgid": tokenize(message_id), "list": tokenize(list_id),
        }
        words = frozenset(word for tokens in fields.values() for word in tokens)
        return cls(internal_ms=internal_ms, size=size, labels=frozenset(label.upper() for label in labels),
                   fields=fields, filenames=tuple(normalize(name) for name in names), words=words)


# ---------------------------------------------------------------- query tree


class Node:
    def matches(self, doc: SearchDoc) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class MatchAll(Node):
    """Every message (``in:anywhere``)."""

    def matches(self, doc: SearchDoc) -> bool:
        return True


@dataclass(frozen=True)
class Neutral(Node):
    """A term with nothing to search (only punctuation, an empty group): ignored, even negated or ORed."""

    def matches(self, doc: SearchDoc) -> bool:
        return True


@dataclass(frozen=True)
class MatchNone(Node):
    def matches(self, doc: SearchDoc) -> bool:
        return False


@dataclass(frozen=True)
class And(Node):
    items: tuple[Node, ...]

    def matches(self, doc: SearchDoc) -> bool:
        return all(item.matches(doc) for item in self.items)


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Node, ...]

    def matches(self, doc: SearchDoc) -> bool:
        return any(item.matches(doc) for item in self.items)


@dataclass(frozen=True)
class Not(Node):
    item: Node

    def matches(self, doc: SearchDoc) -> bool:
        return not self.item.matches(doc)


@dataclass(frozen=True)
class Words(Node):
    """Consecutive words in any of ``fields``."""

    fields: tuple[str, ...]
    tokens: tuple[str, ...]

    def matches(self, doc: SearchDoc) -> bool:
        if not all(word in doc.words for word in self.tokens):
            return False
        return any(contains_phrase(doc.fields.get(name, ()), self.tokens) for name in self.fields)


@dataclass(frozen=True)
class TimeBound(Node):
    """``after`` is inclusive, ``before`` exclusive, both in epoch milliseconds."""

    side: str  # "after" | "before"
    epoch_ms: int

    def matches(self, doc: SearchDoc) -> bool:
        if self.side == "after":
            return doc.internal_ms >= self.epoch_ms
        return doc.internal_ms < self.epoch_ms


@dataclass(frozen=True)
class HasAttachment(Node):
    def matches(self, doc: SearchDoc) -> bool:
        return bool(doc.filenames)


@dataclass(frozen=True)
class Filename(Node):
    """``filename:pdf`` is any .pdf; ``filename:x.pdf`` that name; otherwise words of a name."""

    value: str

    def matches(self, doc: SearchDoc) -> bool:
        tokens = tokenize(self.value)
        for name in doc.filenames:
            if name == self.value or name.endswith("." + self.value):
                return True
            if tokens and contains_phrase(tokenize(name), tokens):
                return True
        return False


@dataclass(frozen=True)
class Label(Node):
    name: str  # normalized: upper case, "-" and "/" and " " alike

    def matches(self, doc: SearchDoc) -> bool:
        return self.name in {label_key(label) for label in doc.labels}


@dataclass(frozen=True)
class Size(Node):
    side: str  # "larger" | "smaller"
    size: int

    def matches(self, doc: SearchDoc) -> bool:
        return doc.size > self.size if self.side == "larger" else doc.size < self.size


def label_key(name: str) -> str:
    return re.sub(r"[-/ _]+", "-", name.strip().upper())


def negate(node: Node) -> Node:
    return node if isinstance(node, Neutral) else Not(node)


def all_of(items: list[Node]) -> Node:
    kept = [item for item in items if not isinstance(item, (Neutral, MatchAll))]
    if not kept:
        return MatchAll() if any(isinstance(item, MatchAll) for item in items) else Neutral()
    return kept[0] if len(kept) == 1 else And(tuple(kept))


def any_of(items: list[Node]) -> Node:
    kept = [item for item in items if not isinstance(item, Neutral)]
    if not kept:
        return Neutral()
    if any(isinstance(item, MatchAll) for item in kept):
        return MatchAll()
    return kept[0] if len(kept) == 1 else Or(tuple(kept))
