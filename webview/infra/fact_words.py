"""The engine's typed facts (reconciler/core/facts.py) in the owner's words: how a run ended and who
ended it, what a failing check gets, which program holds a port, why a change failed. Pure:
each takes the plain dict the view carries and returns words; nothing here parses English.
"""

from __future__ import annotations

from typing import Any, Mapping

from reconciler.core.reasons import Reason

Fact = Mapping[str, Any] | None
_NO_ANSWER = (Reason.UNHEALTHY.value, Reason.START_TIMEOUT.value)


def exit_words(ended: Fact) -> tuple[str, str]:
    """('it stopped with an error', 'exit code 3') for how a run ended; ('', '') when unknown."""
    if not ended:
        return "", ""
    code, name, by = ended.get("code"), ended.get("signal_name"), ended.get("by")
    precise = name or (f"exit code {code}" if code is not None else "exit code unknown")
    if by == "forced":
        left = int(ended.get("leftovers") or 0)
        return "it did not stop in time, so the gateway forced it to stop", precise + (
            f" · {left} more process{'es' if left != 1 else ''} ended" if left else "")
    if by == "owner_kill":
        return "you forced it to stop", precise
    if by == "asked":
        return "it stopped when asked", precise
    if by == "outside":  # a signal that neither it nor the gateway sent
        if name == "SIGKILL":
            return "something outside the gateway killed it", f"{name} · not sent by the gateway"
        return "something outside the gateway stopped it", f"{name} · not sent by the gateway"
    if name is not None:
        return "it crashed inside the program", name
    if code is None:
        return "it ended", precise
    if code == 0:
        return "it finished on its own", precise
    return "it stopped with an error", precise


def check_words(check: Fact) -> str:
    """'its check gets HTTP 500' for what a failing check got."""
    if not check:
        return "its check fails"
    problem = check.get("problem")
    if problem == "status" and check.get("status"):
        return f"its check gets HTTP {check['status']}"
    return {
        "timeout": "its check gets no answer in time",
        "refused": "nothing answers on its port",
        "connect": "its check cannot connect",
        "invalid": "its check gets an answer that is not HTTP",
        "command": "its check command says something is wrong",
    }.get(str(problem), "its check fails")


def held_words(held: Fact) -> tuple[str, str]:
    """('port 8080 is used by another program (nginx)', 'pid 1234 · we did not touch it')."""
    if not held:
        return "", ""
    prog = held.get("program")
    who = f"another program ({prog})" if prog else "another program"
    pid = held.get("pid")
    return f"port {held['port']} is used by {who}", (f"pid {pid} · " if pid else "") + "we did not touch it"


def change_failed_words(facts: Fact, engine_text: str) -> tuple[str, str]:
    """Why a change was not applied: (words, details) from the rollback's typed facts. The
    details line holds the precise terms the words leave out (the check's result, the OS's
    message); the engine's text only when there are no facts (a row from before them)."""
    facts = facts or {}
    details = ""
    if facts.get("held"):
        words, details = held_words(facts["held"])
    elif facts.get("start_error"):
        words, details = "it could not be started", str(facts["start_error"])
    elif facts.get("cause") in _NO_ANSWER or facts.get("never_answered"):
        check = facts.get("check") or {}
        words = "it did not answer" + (f": {check_words(check)}" if check else "")
        details = str(check.get("error") or "")
    elif facts.get("exit"):
        why, code = exit_words(facts["exit"])
        words = f"{why} ({code})"
    else:
        words, details = "it did not work", engine_text
    return words, details
