"""A rule's ``path`` is a Go regular expression (``regexp.Compile``, RE2 syntax): decide as Go
does, and say it in Go's words.

RE2 (google-re2, loaded on first use) parses the expression; the few places where Go's
``regexp/syntax`` differs from RE2 are checked here (Go refuses ``\\C``); RE2's messages are
mapped to Go's (``regexp/syntax`` ``ErrorCode`` strings, ``error parsing regexp: CODE: `EXPR```).
Python's ``re`` is not used: it accepts what Go refuses (``a++``, ``(?>x)``, ``\\Z``) and refuses
what Go accepts (``\\z``, ``\\x{e9}``, ``\\Q..\\E``). Pure: no I/O.
"""

from __future__ import annotations

import functools
from typing import Any

# RE2's error text (before ": ARG") -> Go's ErrorCode text
_CODES = {
    "missing )": "missing closing )",
    "unexpected )": "unexpected )",
    "missing ]": "missing closing ]",
    "bad repetition operator": "invalid nested repetition operator",
    "no argument for repetition operator": "missing argument to repetition operator",
    "invalid repetition size": "invalid repeat count",
    "invalid escape sequence": "invalid escape sequence",
    "invalid character class range": "invalid character class range",
    "invalid character class": "invalid character class",
    "invalid perl operator": "invalid or unsupported Perl syntax",
    "invalid named capture group": "invalid named capture",
    "invalid UTF-8": "invalid UTF-8",
    "bad named capture group": "invalid named capture",
    "pattern too large - compile failed": "expression too large",
    "pattern too large - reverse compile failed": "expression too large",
}


@functools.lru_cache(maxsize=1)
def _re2() -> tuple[Any, Any]:
    import re2  # google-re2: only when a path is checked

    options = re2.Options()
    options.log_errors = False  # RE2 would print every refusal to stderr
    return re2, options


def go_regex_error(pattern: str) -> str | None:
    """None when Go's regexp.Compile accepts `pattern`, else its error text
    (``error parsing regexp: missing closing ): `/(x```)."""
    own = _go_only_refusal(pattern)
    if own:
        return f"error parsing regexp: {own}"
    re2, options = _re2()
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        return f"error parsing regexp: {_go_words(_text(exc), pattern)}"
    return None


def _text(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


def _go_words(message: str, pattern: str) -> str:
    if message == "trailing \\":
        return "trailing backslash at end of expression: ``"
    head, sep, arg = message.partition(": ")
    code = _CODES.get(head)
    if code is None:
        return message if not sep else f"{head}: `{arg}`"
    if code in ("missing closing )", "unexpected )", "expression too large"):
        arg = pattern  # Go names the whole expression for these
    return f"{code}: `{arg}`"


def _go_only_refusal(pattern: str) -> str | None:
    """What Go refuses although RE2 accepts it: ``\\C`` (any byte) outside a class."""
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt == "Q" and not in_class:  # \Q...\E is literal text
                end = pattern.find("\\E", i + 2)
                if end < 0:
                    return None
                i = end + 2
                continue
            if nxt == "C" and not in_class:
                return "invalid escape sequence: `\\C`"
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            if pattern[i + 1:i + 2] == "^":
                i += 1
            if pattern[i + 1:i + 2] == "]":
                i += 1  # a leading ] is a literal
        elif ch == "]" and in_class:
            in_class = False
        i += 1
    return None
