"""What a rule's ``path`` can match, as cloudflared uses it: Go's ``regexp.MatchString`` on the
request's URL path, which always starts with ``/`` (unanchored: ``api`` matches ``/v1/api``).

- `dead_path`: a path that can never match, in words (``^api`` needs a path starting with
  ``a``; ``^$`` an empty one; a line break never occurs in a path). cloudflared accepts such
  a rule and it silently never serves.
- `universal`: a path that matches every path (``^/``, ``.*``, ``/``): the rule is its
  hostname's catch-all, the same as no path.
- `literal_prefix`: the text every match starts with (``^/api/v1`` -> ``/api/v1``), so that a
  hostname's rules are ordered with the narrower ones first and a broad rule never shadows a
  narrower one (``^/api.*`` would otherwise come before ``^/api/x``, which then never serves).
Pure: no I/O. Decisions are conservative: what is not clearly dead is not called dead.
"""

from __future__ import annotations

import re

_FLAG_GROUP = re.compile(r"\(\?([imsU]+)\)")  # a leading (?i) / (?s) ... group (flags only, no ':')
_META = set("\\.+*?()|[]{}^$")
_QUANT = set("*+?{")
# Paths every universal pattern must match (RE2 standing in for Go's regexp: the same syntax).
PROBES = ("/", "/a", "/index.html", "/Z/y-x_~.%20", "/ü/ß", "/.well-known/acme-challenge/x", "/0", "//",
          "/" + "x" * 300)


def _strip_flags(pattern: str) -> tuple[str, bool]:
    """The pattern without its leading flag groups, and whether (?i) was among them."""
    fold = False
    while True:
        m = _FLAG_GROUP.match(pattern)
        if m is None:
            return pattern, fold
        fold = fold or "i" in m.group(1)
        pattern = pattern[m.end():]


def _top_level_alternation(pattern: str) -> bool:
    depth, in_class, i = 0, False, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if pattern[i + 1:i + 2] == "Q":  # \Q...\E: literal text
                end = pattern.find("\\E", i + 2)
                i = len(pattern) if end < 0 else end + 2
                continue
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            if pattern[i + 1:i + 2] == "^":
                i += 1
            if pattern[i + 1:i + 2] == "]":
                i += 1  # a leading ] is literal
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "|" and depth == 0:
            return True
        i += 1
    return False


def _anchor(pattern: str) -> str | None:
    """The rest after a leading ``^`` or ``\\A`` (after flag groups), or None when unanchored."""
    if _top_level_alternation(pattern):
        return None
    if pattern.startswith("^"):
        return pattern[1:]
    if pattern.startswith("\\A"):
        return pattern[2:]
    return None


def _literal(rest: str, i: int) -> tuple[str | None, int]:
    """The literal character at rest[i] and the index after it (None: not a literal)."""
    ch = rest[i]
    if ch == "\\" and i + 1 < len(rest):
        nxt = rest[i + 1]
        if not nxt.isalnum() and nxt.isascii():
            return nxt, i + 2  # an escaped punctuation character is itself
        m = re.match(r"\\x(?:\{([0-9A-Fa-f]{1,6})\}|([0-9A-Fa-f]{2}))", rest[i:])
        if m:
            try:
                return chr(int(m.group(1) or m.group(2), 16)), i + m.end()
            except (ValueError, OverflowError):
                return None, i
        return None, i
    if ch in _META:
        return None, i
    return ch, i + 1


def literal_prefix(pattern: str) -> str:
    """The literal text at the start of every match of an anchored pattern ("" when unanchored
    or when it starts with something else); lower case under (?i)."""
    body, fold = _strip_flags(pattern)
    rest = _anchor(body)
    if rest is None:
        return ""
    out: list[str] = []
    i = 0
    while i < len(rest):
        ch, after = _literal(rest, i)
        if ch is None:
            break
        if after < len(rest) and rest[after] in _QUANT:
            break  # this character may repeat or be left out: the prefix ends before it
        out.append(ch)
        i = after
    text = "".join(out)
    return text.lower() if fold else text


_CLASS_ESC = {"d": False, "w": False, "s": False}  # does \d, \w, \s contain '/'? (no)


def _first_cannot_be_slash(rest: str) -> str | None:
    """Why the first character of a match of `rest` (after the anchor) cannot be '/' (None:
    it can, or it is not clear)."""
    if rest == "":
        return None  # "^" alone matches every path
    if re.fullmatch(r"\$|\\z", rest):
        return "it only matches an empty path, and every path starts with /"
    ch, _ = _literal(rest, 0)
    if ch is not None:
        return None if ch == "/" else f"it only matches paths that start with {ch!r}, and every path starts with /"
    if rest[0] == "\\" and rest[1:2] in _CLASS_ESC:
        return f"its first character must match \\{rest[1]}, which / does not"
    if rest[0] == "[":
        members = _simple_class(rest)
        if members is not None and not members[0] and "/" not in members[1]:
            return f"its first character must be one of {rest[:rest.index(']', 1) + 1]}, which has no /"
    return None


def _simple_class(rest: str) -> tuple[bool, set[str]] | None:
    """(negated, characters) of a class of plain characters and ranges (None: anything else)."""
    end = rest.find("]", 2 if rest[1:2] == "]" else 1)
    if end < 0:
        return None
    inner = rest[1:end]
    negated = inner.startswith("^")
    inner = inner[1:] if negated else inner
    if "\\" in inner or "[:" in inner:
        return None
    chars: set[str] = set()
    i = 0
    while i < len(inner):
        if i + 2 < len(inner) and inner[i + 1] == "-":
            lo, hi = ord(inner[i]), ord(inner[i + 2])
            if hi - lo > 0x2000:
                return None
            chars.update(chr(c) for c in range(lo, hi + 1))
            i += 3
        else:
            chars.add(inner[i])
            i += 1
    return negated, chars


def dead_path(pattern: str) -> str | None:
    """Why a path can never match any request's path, in words (None: it can)."""
    if any(c in pattern for c in "\r\n"):
        return "it has a line break, and a path never does"
    body, _ = _strip_flags(pattern)
    rest = _anchor(body)
    if rest is None:
        return None
    return _first_cannot_be_slash(rest)


def universal(pattern: str) -> bool:
    """The path matches every request path (the rule is then its hostname's catch-all)."""
    if not pattern:
        return True
    from reconciler.tunnel.goregex import go_regex_error, search

    if go_regex_error(pattern) is not None:
        return False
    return all(search(pattern, probe) for probe in PROBES)
