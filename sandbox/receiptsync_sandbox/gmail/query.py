"""Gmail search (`q`) as a pure function: parse a query string, then match it against a message.

What Gmail does, as far as a receipt sync can notice:
* implicit AND between terms; ``OR`` (upper case) and ``{a b}`` for alternatives; ``OR`` binds
  tighter than AND, so ``a b OR c`` is ``a AND (b OR c)``; parentheses group; ``-`` negates.
* bare words and "quoted phrases" match whole words (case-insensitive) in subject, from, to/cc,
  body text and attachment file names; a phrase must appear as consecutive words.
* ``after:``/``newer:`` and ``before:``/``older:`` take a date (YYYY/MM/DD, YYYY-MM-DD, MM/DD/YYYY),
  read as midnight America/Los_Angeles, or epoch seconds taken exactly; after is inclusive
  (internalDate >= bound) and before exclusive (internalDate < bound).
* ``operator:(a b)`` applies the operator to each term inside the parentheses.
* an operator Gmail has but a value we cannot read, or a ``name:value`` that is not an operator,
  is searched as plain words; only absurd nesting is refused (:class:`QueryError`).
"""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta

from .query_tree import (
    Filename, HasAttachment, Label, MatchAll, MatchNone, Neutral, Node, Not, SearchDoc, Size, TimeBound,
    Words, label_key, all_of, any_of, negate
)
from .text import normalize, tokenize

GMAIL_DATE_ZONE = ZoneInfo("America/Los_Angeles")
MAX_NESTING = 100

# Where a bare word may be found; ``to:`` also looks at cc/bcc like Gmail does.
BARE_WORD_FIELDS = ("subject", "from", "to", "cc", "body", "filename")
ADDRESS_FIELDS = {"from": ("from",), "to": ("to", "cc", "bcc"), "deliveredto": ("to", "cc", "bcc"),
                  "cc": ("cc",), "bcc": ("bcc",), "subject": ("subject",), "rfc822msgid": ("rfc822msgid",),
                  "list": ("list",)}
DATE_OPERATORS = {"after": "after", "newer": "after", "before": "before", "older": "before"}
RELATIVE_OPERATORS = {"newer_than": "after", "older_than": "before"}
OTHER_OPERATORS = {"has", "filename", "label", "in", "is", "category", "larger", "smaller", "size"}
OPERATORS = set(ADDRESS_FIELDS) | set(DATE_OPERATORS) | set(RELATIVE_OPERATORS) | OTHER_OPERATORS


class QueryError(ValueError):
    """The query cannot be searched (Gmail answers 400 Invalid query)."""


# ---------------------------------------------------------------- operator values


def parse_time_bound(value: str) -> int | None:
    """Epoch milliseconds for a date (midnight Los Angeles) or epoch seconds; None if unreadable."""
    if value.isascii() and value.isdigit():
        return int(value) * 1000
    day = _parse_day(value)
    if day is None:
        return None
    return int(dt.datetime.combine(day, dt.time.min, tzinfo=GMAIL_DATE_ZONE).timestamp()) * 1000


def _parse_day(value: str) -> dt.date | None:
    year_first = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value)
    month_first = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", value)
    try:
        if year_first:
            year, month, day = (int(part) for part in year_first.groups())
            return dt.date(year, month, day)
        if month_first:
            month, day, year = (int(part) for part in month_first.groups())
            return dt.date(year, month, day)
    except ValueError:
        return None
    return None


def parse_relative_age(value: str, now_ms: int) -> int | None:
    """``3d`` / ``2m`` / ``1y`` before ``now_ms``, in epoch milliseconds."""
    match = re.fullmatch(r"(\d{1,6})([dmy])", value.lower())
    if not match:
        return None
    amount, unit = int(match.group(1)), match.group(2)
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    delta = {"d": relativedelta(days=amount), "m": relativedelta(months=amount),
             "y": relativedelta(years=amount)}[unit]
    try:
        return int((now - delta).timestamp() * 1000)
    except (OverflowError, ValueError):
        return 0


def parse_size(value: str) -> int | None:
    match = re.fullmatch(r"(\d{1,12})\s*([kKmM]?)[bB]?", value)
    if not match:
        return None
    scale = {"": 1, "k": 1024, "m": 1024 * 1024}[match.group(2).lower()]
    return int(match.group(1)) * scale


def _label_for(operator: str, value: str) -> Node:
    key = label_key(value)
    if operator == "in" and key == "ANYWHERE":
        return MatchAll()
    if operator == "category":
        return Label("CATEGORY-" + key)
    if operator == "is" and key == "READ":
        return Not(Label("UNREAD"))
    return Label(key)


@dataclass(frozen=True)
class _Context:
    now_ms: int
    me: str


def build_term(operator: str | None, value: str, context: _Context) -> Node:
    """The node for one term: a bare word/phrase (operator None) or ``operator:value``."""
    if operator is None:
        return _words(BARE_WORD_FIELDS, value)
    name = operator.lower()
    if name in ADDRESS_FIELDS:
        target = context.me if value.lower() == "me" and context.me else value
        return _words(ADDRESS_FIELDS[name], target)
    if name in DATE_OPERATORS:
        bound = parse_time_bound(value)
        return TimeBound(DATE_OPERATORS[name], bound) if bound is not None else _as_words(operator, value)
    if name in RELATIVE_OPERATORS:
        bound = parse_relative_age(value, context.now_ms)
        return TimeBound(RELATIVE_OPERATORS[name], bound) if bound is not None else _as_words(operator, value)
    if name == "has":
        return _has(value.lower())
    if name == "filename":
        return Filename(normalize(value)) if value else Neutral()
    if name in ("label", "in", "is", "category"):
        return _label_for(name, value) if value else Neutral()
    if name in ("larger", "smaller", "size"):
        size = parse_size(value)
        side = "smaller" if name == "smaller" else "larger"
        return Size(side, size) if size is not None else _as_words(operator, value)
    return _as_words(operator, value)


def _has(value: str) -> Node:
    if value == "attachment":
        return HasAttachment()
    if value == "nouserlabels":
        return MatchAll()
    return MatchNone()  # drive, youtube, stars, user labels...: none exist in an emulated mailbox


def _words(fields: tuple[str, ...], value: str) -> Node:
    tokens = tokenize(value)
    return Words(fields, tokens) if tokens else Neutral()


def _as_words(operator: str, value: str) -> Node:
    return _words(BARE_WORD_FIELDS, f"{operator}:{value}")


# ---------------------------------------------------------------- lexer


@dataclass(frozen=True)
class Token:
    kind: str  # ( ) { } NEG OR AND WORD PHRASE OP OPGROUP
    text: str = ""
    operator: str = ""


_SPECIAL = set('(){}"')
_TERM_STARTS = {"(", "{", "NEG", "WORD", "PHRASE", "OP", "OPGROUP"}


def lex(query: str) -> list[Token]:
    tokens: list[Token] = []
    index, end = 0, len(query)
    while index < end:
        char = query[index]
        if char.isspace():
            index += 1
        elif char in "(){}":
            tokens.append(Token(char))
            index += 1
        elif char == '"':
            text, index = _read_phrase(query, index)
            tokens.append(Token("PHRASE", text))
        elif char in "-+" and index + 1 < end and not query[index + 1].isspace():
            if char == "-":  # "+word" is Gmail's exact-word match: the same as a word here
                tokens.append(Token("NEG"))
            index += 1
        else:
            token, index = _read_word(query, index)
            tokens.append(token)
    return tokens


def _read_phrase(query: str, index: int) -> tuple[str, int]:
    """The text between the quote at ``index`` and the next one (or the end)."""
    close = query.find('"', index + 1)
    if close < 0:
        return query[index + 1:], len(query)
    return query[index + 1:close], close + 1


def _read_word(query: str, index: int) -> tuple[Token, int]:
    end = index
    while end < len(query) and not query[end].isspace() and query[end] not in _SPECIAL:
        end += 1
    word = query[index:end]
    if word in ("OR", "|"):
        return Token("OR"), end
    if word == "AND":
        return Token("AND"), end
    name, colon, value = word.partition(":")
    if not colon or name.lower() not in OPERATORS:
        return Token("WORD", word), end
    if value:
        return Token("OP", value, name), end
    following = query[end] if end < len(query) else ""
    if following == '"':
        text, after = _read_phrase(query, end)
        return Token("OP", text, name), after
    if following == "(":
        return Token("OPGROUP", "", name), end
    return Token("WORD", word), end


# ---------------------------------------------------------------- parser


class _Parser:
    def __init__(self, tokens: list[Token], context: _Context):
        self.tokens = tokens
        self.position = 0
        self.context = context
        self.operator: str | None = None  # set inside ``operator:( ... )``
        self.depth = 0

    def peek(self) -> Token | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def advance(self) -> Token:
        token = self.tokens[self.position]
        self.position += 1
        return token

    def parse(self) -> Node:
        return self.all_terms(closer=None)

    def all_terms(self, closer: str | None) -> Node:
        """Terms up to ``closer`` (or the end), implicitly ANDed; stray tokens are skipped."""
        items: list[Node] = []
        while (token := self.peek()) is not None and token.kind != closer:
            if token.kind in _TERM_STARTS:
                items.append(self.alternatives(closer))
            else:
                self.advance()  # AND, a dangling OR, an unmatched ) or }
        return all_of(items)

    def alternatives(self, closer: str | None) -> Node:
        items = [self.unary()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.advance()
            following = self.peek()
            if following is None or following.kind not in _TERM_STARTS:
                break
            items.append(self.unary())
        return any_of(items)

    def unary(self) -> Node:
        self.enter()
        try:
            token = self.peek()
            if token is not None and token.kind == "NEG":
                self.advance()
                return negate(self.unary())
            return self.primary()
        finally:
            self.depth -= 1

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise QueryError("Invalid query: nested too deeply")

    def primary(self) -> Node:
        token = self.peek()
        if token is None or token.kind not in _TERM_STARTS or token.kind == "NEG":
            return Neutral()  # e.g. "-)": nothing to negate
        self.advance()
        if token.kind == "(":
            node = self.all_terms(closer=")")
            self.skip(")")
            return node
        if token.kind == "{":
            return self.brace_group()
        if token.kind == "OPGROUP":
            return self.operator_group(token.operator)
        operator = token.operator if token.kind == "OP" else self.operator
        return build_term(operator, token.text, self.context)

    def brace_group(self) -> Node:
        items: list[Node] = []
        while (token := self.peek()) is not None and token.kind != "}":
            if token.kind in _TERM_STARTS:
                items.append(self.unary())
            else:
                self.advance()
        self.skip("}")
        return any_of(items)

    def operator_group(self, operator: str) -> Node:
        outer, self.operator = self.operator, operator
        try:
            return self.primary()  # the "(" that follows
        finally:
            self.operator = outer

    def skip(self, kind: str) -> None:
        token = self.peek()
        if token is not None and token.kind == kind:
            self.advance()


def compile_query(query: str, *, now_ms: int | None = None, me: str = "") -> Node:
    """Parse ``query``; ``now_ms`` anchors ``newer_than:``, ``me`` is the mailbox for ``from:me``."""
    context = _Context(now_ms=int(time.time() * 1000) if now_ms is None else now_ms, me=me)
    return _Parser(lex(query or ""), context).parse()


def matches(query: str, doc: SearchDoc, *, now_ms: int | None = None, me: str = "") -> bool:
    return compile_query(query, now_ms=now_ms, me=me).matches(doc)
