"""Numbers as people type them into settings: only 0-9. `str.isdigit()` also says yes to
`²` (which `int()` refuses: a crash), and `int()` reads Arabic-Indic or full-width digits,
which no port or count is written in. Pure: no I/O."""

from __future__ import annotations


def plain_digits(text: str) -> bool:
    """`text` is one or more of 0-9 and nothing else."""
    return text.isascii() and text.isdigit()
