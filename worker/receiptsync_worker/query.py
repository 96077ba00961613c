"""The Gmail search query for one sync, as pure functions.

The query is ``((<receipt terms OR'd>) -in:spam -in:trash) after:<epoch> before:<epoch> (<user terms>)``.
The user's ``spec.query`` is tokenized and re-assembled so it can only narrow the search (terms that
would reach into spam or trash - ``in:spam``, ``in:trash``, ``in:anywhere``, ``label:spam``,
``label:trash`` - are dropped, and the fixed group excludes both anyway): unbalanced
parentheses/braces and quotes are dropped or closed, control characters removed, dangling ``OR``s
removed, and the result sits inside its own parentheses, so nothing the user types can escape its
group and OR itself around the receipt terms or the date bounds.
"""
from __future__ import annotations

import re
import unicodedata

ENGLISH_TERMS = (
    "receipt",
    "receipts",
    "invoice",
    "invoices",
    '"order confirmation"',
    '"payment confirmation"',
    '"payment receipt"',
    '"tax invoice"',
    '"purchase confirmation"',
    '"billing statement"',
)
HEBREW_TERMS = (
    "קבלה",
    "קבלות",
    "חשבונית",
    "חשבוניות",
    '"חשבונית מס"',
    '"חשבונית מס קבלה"',
    '"אישור תשלום"',
    '"אישור הזמנה"',
    '"אישור רכישה"',
)
RECEIPT_TERMS = ENGLISH_TERMS + HEBREW_TERMS
# Never spam or trash (issue 14: phishing "receipts" live there), whatever the user adds: the fixed
# group is the receipt terms AND this scope.
MAILBOX_SCOPE = "-in:spam -in:trash"
RECEIPT_GROUP = "((" + " OR ".join(RECEIPT_TERMS) + ") " + MAILBOX_SCOPE + ")"
# User terms that would widen the search to spam or trash (negated ones narrow it and stay).
_WIDENING = re.compile(r"^(in|label):(spam|trash|anywhere)$", re.IGNORECASE)

_OPENERS = {"(": ")", "{": "}"}
_CLOSERS = {")": "(", "}": "{"}
_OR_OPERATORS = {"OR", "|"}
# Deeper user groups are flattened: nobody needs them, and search backends refuse absurd nesting.
MAX_USER_DEPTH = 8
# Quoted phrase (closed or running to the end), an opening bracket (maybe negated), a closing
# bracket, or a run of ordinary characters.
_TOKEN = re.compile(r'-?"[^"]*"?|-?[({]|[)}]|[^\s(){}"]+')


def build_query(after_epoch: int, before_epoch: int, user_query: str | None = None) -> str:
    """The full Gmail ``q`` for a date range [after, before) in epoch seconds plus optional user terms."""
    parts = [RECEIPT_GROUP, f"after:{int(after_epoch)}", f"before:{int(before_epoch)}"]
    user_group = sanitize_user_query(user_query or "")
    if user_group:
        parts.append(f"({user_group})")
    return " ".join(parts)


def sanitize_user_query(raw: str) -> str:
    """The user's terms with balanced brackets/quotes and no dangling operators ('' if nothing is left)."""
    tokens = [_clean_token(t) for t in _TOKEN.findall(_strip_control(raw))]
    tokens = _flatten_deep_groups(_drop_unbalanced_brackets([t for t in tokens if t and not _WIDENING.match(t)]))
    return _join(_drop_dangling_operators(tokens))


def _is_opener(token: str) -> bool:
    return token.lstrip("-") in _OPENERS


def _closer_for(opener: str) -> str:
    return _OPENERS[opener.lstrip("-")]


def _join(tokens: list[str]) -> str:
    """Tokens with single spaces, but none just inside brackets: ``-(a OR b)``."""
    text, previous = "", ""
    for token in tokens:
        if text and not _is_opener(previous) and token not in _CLOSERS:
            text += " "
        text += token
        previous = token
    return text


def _strip_control(raw: str) -> str:
    # Control/format characters (NUL, newlines, bidi overrides, ...) become plain spaces.
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in raw)


def _clean_token(token: str) -> str:
    negated = token.startswith("-")
    body = token[1:] if negated else token
    if body.startswith('"'):
        # A phrase keeps its words only; brackets inside quotes would confuse naive parsers.
        inner = re.sub(r'[(){}"]', " ", body[1:]).strip()
        return ("-" if negated else "") + f'"{" ".join(inner.split())}"' if inner else ""
    return token


def _drop_unbalanced_brackets(tokens: list[str]) -> list[str]:
    """Keep only brackets that pair up properly; everything else stays."""
    keep = [True] * len(tokens)
    stack: list[int] = []
    for index, token in enumerate(tokens):
        if _is_opener(token):
            stack.append(index)
        elif token in _CLOSERS:
            if stack and _closer_for(tokens[stack[-1]]) == token:
                stack.pop()
            else:
                keep[index] = False
    for index in stack:
        keep[index] = False
    return _drop_empty_groups([t for t, k in zip(tokens, keep) if k])


def _flatten_deep_groups(tokens: list[str]) -> list[str]:
    """Drop bracket pairs nested deeper than MAX_USER_DEPTH (their contents stay). Input is balanced."""
    out: list[str] = []
    opened: list[bool] = []  # per open bracket: was it kept?
    for token in tokens:
        if _is_opener(token):
            keep = sum(opened) < MAX_USER_DEPTH
            opened.append(keep)
            if keep:
                out.append(token)
        elif token in _CLOSERS:
            if opened.pop():
                out.append(token)
        else:
            out.append(token)
    return out


def _drop_empty_groups(tokens: list[str]) -> list[str]:
    changed = True
    while changed:
        changed = False
        for index in range(len(tokens) - 1):
            if _is_opener(tokens[index]) and tokens[index + 1] == _closer_for(tokens[index]):
                del tokens[index : index + 2]
                changed = True
                break
    return tokens


def _drop_dangling_operators(tokens: list[str]) -> list[str]:
    """Remove OR (and a lone '-') that has no operand on one side, inside any group."""
    out: list[str] = []
    for token in tokens:
        if token in _OR_OPERATORS:
            if not out or _is_opener(out[-1]) or out[-1] in _OR_OPERATORS or out[-1] == "-":
                continue
        elif token in _CLOSERS:
            while out and (out[-1] in _OR_OPERATORS or out[-1] == "-"):
                out.pop()
        elif token == "-" and out and out[-1] == "-":
            continue
        out.append(token)
    while out and (out[-1] in _OR_OPERATORS or out[-1] == "-"):
        out.pop()
    return _drop_empty_groups(out)
