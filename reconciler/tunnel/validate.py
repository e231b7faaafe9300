"""Ask the installed cloudflared itself before a new config.yml replaces the running one.

``cloudflared tunnel --config FILE ingress validate`` (``--config`` before ``ingress``: after
it, cloudflared prints "Incorrect Usage" and exits 0). Accepted means exit 0 AND a line
``OK``; a ``Warning`` (an unknown nested key) exits 0 without ``OK`` and counts as refused.

`screen` finds the rules cloudflared refuses, so one bad route never takes the others down:
a refusal that names ``Rule #N`` points at that rule; otherwise each rule is tried on its own
(with the catch-all). A refusal no single rule explains refuses the whole candidate (then
the running config stays). Answers are remembered per (executable, text), so an unchanged
folder costs no second run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reconciler.platform import current
from reconciler.tunnel.ingress import Rule, ordered

TIMEOUT = 20.0  # seconds: validation reads the file only (no network)
_RULE_N = re.compile(r"\bRule #(\d+)\b")
_REMEMBER = 64


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str = ""  # cloudflared's words (without "Validation failed: ") when refused


_seen: OrderedDict[tuple[str, float, str], Verdict] = OrderedDict()


def run(executable: Path, text: str, folder: Path) -> Verdict:
    """Validate `text` as a config file in `folder` (where config.yml lives)."""
    try:
        stamp = executable.stat().st_mtime
    except OSError as exc:
        return Verdict(False, f"cannot run {executable}: {exc}")
    key = (str(executable), stamp, text)
    if key in _seen:
        _seen.move_to_end(key)
        return _seen[key]
    verdict = _run(executable, text, folder)
    _seen[key] = verdict
    while len(_seen) > _REMEMBER:
        _seen.popitem(last=False)
    return verdict


def _run(executable: Path, text: str, folder: Path) -> Verdict:
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / f".candidate.{os.getpid()}.yml"
    candidate.write_text(text, encoding="utf-8")
    try:
        done = subprocess.run([str(executable), "tunnel", "--config", str(candidate), "ingress", "validate"],
                              capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, check=False,
                              **current().quiet_kwargs())
    except subprocess.TimeoutExpired:
        return Verdict(False, f"cloudflared did not finish validating within {TIMEOUT:g}s")
    except OSError as exc:
        return Verdict(False, f"cannot run {executable}: {exc}")
    finally:
        candidate.unlink(missing_ok=True)
    lines = [line.strip() for line in (done.stdout + "\n" + done.stderr).splitlines() if line.strip()]
    if done.returncode == 0 and "OK" in lines:
        return Verdict(True)
    return Verdict(False, _words(lines, str(candidate), done.returncode))


def _words(lines: list[str], candidate: str, code: int) -> str:
    """cloudflared's refusal: the `Validation failed:` line, else the Warning or the YAML
    decoder's error and the lines that follow it (yaml.v3 puts each problem on a line of its
    own), else the last line; the candidate's temporary name is not shown, nor its folder."""
    useful = [ln for ln in lines if not ln.startswith("Validating rules from")]
    failed = next((ln for ln in useful if ln.startswith("Validation failed: ")), None)
    start = next((i for i, ln in enumerate(useful) if ln.startswith(("Warning", "error parsing YAML"))), None)
    if failed is not None:
        text = failed.removeprefix("Validation failed: ")
    elif start is not None:
        text = " ".join(useful[start:])
    else:
        text = useful[-1] if useful else f"exit code {code} and no OK"
    folder = str(Path(candidate).parent)
    return (text.replace(f" at {candidate}", "").replace(candidate, "config.yml")
            .replace(folder + os.sep, "").replace(folder, "the data folder"))


@dataclass(frozen=True)
class Screened:
    rules: list[Rule]  # what cloudflared accepts (catch-all last)
    refused: list[tuple[Rule, str]]  # each refused rule and cloudflared's message
    whole: str | None = None  # set when the candidate is refused as a whole


def screen(render: Callable[[list[Rule]], str], rules: list[Rule], check: Callable[[str], Verdict]) -> Screened:
    """Leave out the rules `check` (the validator) refuses; `render(rules)` is the config text."""
    routes = [r for r in rules if r.server is not None]
    refused: list[tuple[Rule, str]] = []
    for _ in range(len(routes) + 1):
        current = ordered(routes)
        verdict = check(render(current))
        if verdict.ok:
            return Screened(current, refused)
        named = _RULE_N.search(verdict.message)
        index = int(named.group(1)) - 1 if named else -1
        bad: Rule | None
        if 0 <= index < len(current) - 1:
            bad = current[index]
        else:
            if not check(render(ordered([]))).ok:  # not about any rule: the file as a whole
                return Screened(current, refused, verdict.message)
            bad = next((r for r in routes if not check(render(ordered([r]))).ok), None)
            if bad is None:
                return Screened(current, refused, verdict.message)
            verdict = check(render(ordered([bad])))
        refused.append((bad, verdict.message))
        routes.remove(bad)
    return Screened(ordered(routes), refused, "cloudflared kept refusing the config")
