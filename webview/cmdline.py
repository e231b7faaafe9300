"""A command line as a person types it, on Windows as on Linux: split into argv without
eating backslashes (`C:\\Users\\me\\app.exe` stays as typed), joined back the same way it
was typed (quotes only where a part has spaces), and the checks a form makes before it
saves: the program can be found, the working folder exists."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

PYTHONS = ("python", "python3", "python.exe")  # the gateway runs these with its own Python


class CommandError(ValueError):
    pass


def split_command(text: str) -> list[str]:
    """Words separated by spaces; "double" or 'single' quotes keep spaces in one word.
    A backslash is an ordinary character (Windows paths), never an escape."""
    parts: list[str] = []
    word: list[str] = []
    quote: str | None = None
    started = False
    for ch in text.strip():
        if quote:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch in "\"'":
            quote, started = ch, True
        elif ch.isspace():
            if started:
                parts.append("".join(word))
                word, started = [], False
        else:
            word.append(ch)
            started = True
    if quote:
        raise CommandError(f"a {quote} quote is not closed")
    if started:
        parts.append("".join(word))
    return parts


def join_command(argv: Sequence[str]) -> str:
    """The argv as it would have been typed: quotes only around parts with spaces."""
    out = []
    for part in argv:
        if part and not any(c.isspace() or c in "\"'" for c in part):
            out.append(part)
        elif '"' not in part:
            out.append(f'"{part}"')
        else:
            out.append(f"'{part}'")
    return " ".join(out)


def looks_like_path(program: str) -> bool:
    return "/" in program or "\\" in program or (len(program) > 1 and program[1] == ":")


def program_problem(argv: Sequence[str], cwd: Path, env: Mapping[str, str] | None = None) -> str | None:
    """Why the program would not start (it cannot be found), or None."""
    if not argv:
        return "write the program to run, e.g. python app.py"
    program = argv[0]
    if "{port}" in program or program in PYTHONS:
        return None
    if looks_like_path(program):
        path = Path(program).expanduser()
        path = path if path.is_absolute() else cwd / path
        if not path.exists():
            return f"{program} does not exist (looked in {path.parent})"
        if path.is_dir():
            return f"{program} is a folder, not a program"
        return None
    search = (env or {}).get("PATH") or os.environ.get("PATH", "")
    if shutil.which(program, path=search) is None:
        return (f"no program called {program} was found on this computer; install it, or write its full path "
                f"(e.g. C:\\Program Files\\...\\{program}.exe)")
    return None


def folder_problem(raw: str, config_dir: Path) -> tuple[Path | None, str | None]:
    """(the folder, None) or (None, why not): a relative folder is inside the server folder."""
    if not raw:
        return config_dir, None
    path = Path(raw).expanduser()
    path = path if path.is_absolute() else config_dir / path
    if not path.exists():
        return None, f"the folder {raw} does not exist"
    if not path.is_dir():
        return None, f"{raw} is a file, not a folder"
    return path, None
