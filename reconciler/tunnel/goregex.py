"""A rule's ``path`` is a Go regular expression (``regexp.Compile``, RE2 syntax): decide as Go
does, and say it in Go's words.

RE2 (google-re2, loaded on first use) parses the expression; the places where Go's
``regexp/syntax`` differs from RE2 are handled here: Go refuses ``\\C``; Unicode class names
are Go's (`gonames`: ``\\p{greek}``, ``\\p{Letter}`` yes, ``\\p{Old_Italic}`` no), rewritten for
RE2; and Go has no memory budget where RE2's default (8 MB) refuses ``\\pL{500}``, so RE2 gets
a large one. RE2's messages are mapped to Go's (``regexp/syntax`` ``ErrorCode`` strings,
``error parsing regexp: CODE: `EXPR```).
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


MAX_MEM = 256 << 20  # RE2's budget here: Go has none (its limits are counted in nodes, not bytes)


@functools.lru_cache(maxsize=1)
def _re2() -> tuple[Any, Any]:
    import re2  # google-re2: only when a path is checked

    options = re2.Options()
    options.log_errors = False  # RE2 would print every refusal to stderr
    options.max_mem = MAX_MEM
    return re2, options


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> tuple[Any, str | None]:
    """(RE2's compiled pattern, None) or (None, Go's error text)."""
    own = _go_only_refusal(pattern)
    if own:
        return None, f"error parsing regexp: {own}"
    rewritten, back = for_re2(pattern)
    re2, options = _re2()
    try:
        return re2.compile(rewritten, options), None
    except re2.error as exc:
        text = _text(exc)
        for made, original in back.items():
            text = text.replace(made, original)
        return None, f"error parsing regexp: {_go_words(text, pattern)}"


def go_regex_error(pattern: str) -> str | None:
    """None when Go's regexp.Compile accepts `pattern`, else its error text
    (``error parsing regexp: missing closing ): `/(x```)."""
    return _compiled(pattern)[1]


def search(pattern: str, text: str) -> bool:
    """Go's ``MatchString`` (unanchored), for a pattern Go accepts (False otherwise)."""
    regex, error = _compiled(pattern)
    return error is None and regex.search(text) is not None


_INSIDE = {"ASCII": ("\\x00-\\x7F", "\\x{80}-\\x{10FFFF}"), "LC": ("\\p{Lu}\\p{Ll}\\p{Lt}", "\\P{L}"),
           "Cn": ("\\x{378}-\\x{379}", "\\P{Cn_}"), "Assigned": ("\\p{Any}", "\\P{Any}")}


def _re2_class(value: str, negated: bool, in_class: bool) -> str:
    """RE2's text for Go's class `value` (a `gonames.lookup` answer)."""
    if value in _INSIDE:
        pos, neg = _INSIDE[value]
        if value == "Cn" and negated:
            return "\\p{Any}"  # everything but the unassigned: close enough to decide a match
        if in_class:
            return neg if negated else pos
        return f"[{'^' if negated else ''}{pos}]"
    return f"\\{'P' if negated else 'p'}{{{value}}}"


def for_re2(pattern: str) -> tuple[str, dict[str, str]]:
    """`pattern` with each ``\\p``/``\\P`` class written as RE2 reads it (Go's names decided
    by `gonames`); a name Go refuses becomes a marker RE2 refuses too. `back` maps what was
    written to the original text, for RE2's error messages."""
    from reconciler.tunnel.gonames import lookup

    out: list[str] = []
    back: dict[str, str] = {}
    i, in_class, n = 0, False, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            if nxt == "Q" and not in_class:
                end = pattern.find("\\E", i + 2)
                stop = n if end < 0 else end + 2
                out.append(pattern[i:stop])
                i = stop
                continue
            if nxt in "pP":
                seq, name = _class_name(pattern, i)
                negated = nxt == "P"
                if name.startswith("^"):
                    negated, name = not negated, name[1:]
                value = lookup(name) if seq.endswith("}") or not seq[2:3] == "{" else None
                if value is None:
                    made = f"\\p{{Zgo{len(back)}}}"  # RE2 refuses it: invalid character class range
                    back[made] = seq
                    out.append(made)
                    if not seq.endswith("}") and seq[2:3] == "{":
                        break  # Go's error quotes the rest of the expression
                else:
                    made = _re2_class(value, negated, in_class)
                    back.setdefault(made, seq)
                    out.append(made)
                i += len(seq)
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if not in_class and ch == "[":
            in_class = True
            j = i + 1
            if pattern[j:j + 1] == "^":
                j += 1
            if pattern[j:j + 1] == "]":
                j += 1  # a leading ] is a literal
            out.append(pattern[i:j])
            i = j
            continue
        if in_class and ch == "[" and pattern[i + 1:i + 2] == ":":
            end = pattern.find(":]", i + 2)
            if end >= 0:
                out.append(pattern[i:end + 2])
                i = end + 2
                continue
        if in_class and ch == "]":
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out), back


def _class_name(pattern: str, i: int) -> tuple[str, str]:
    """(the whole ``\\pX`` / ``\\p{Name}`` text, the name) at pattern[i], as Go cuts it; without a
    closing brace, the rest of the pattern (Go's error quotes it)."""
    if i + 2 >= len(pattern):
        return pattern[i:], ""
    if pattern[i + 2] != "{":
        return pattern[i:i + 3], pattern[i + 2]
    end = pattern.find("}", i)
    if end < 0:
        return pattern[i:], ""
    return pattern[i:end + 1], pattern[i + 3:end]


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
