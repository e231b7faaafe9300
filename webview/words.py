"""The page's words: a server's phase, reason and last exit as the owner reads them
(see VOICE.md), with the precise terms kept for a small "details" line. Pure: no I/O.

Keyed on the phase and the planner's `Reason` (the prefix of a state's reason) and on the
structured exit (`last_exit`); English is parsed only where the state carries nothing else
(a held port's holder, which the loop records only in the reason's detail).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from reconciler.actions import Reason

R = Reason
_EXIT_RE = re.compile(r"exited with code (-?\d+)")
_SIGNAL_RE = re.compile(r"killed by signal (\d+) \((\w+)\)")
_HELD_RE = re.compile(r"port (\d+) is held by (?:pid (\d+) \(([^)]*)\)|another program)")
_COUNTDOWN_RE = re.compile(r";?\s*next try in [\d.]+\s*s\b")
_FAILURE_RE = re.compile(r";?\s*failure \d+ in a row")
ATTENTION = ("crashed", "cant-start", "failing", "config")  # tones that put a card first

# what a stop or a crash reason means, for the details line and the status
_STOPPED_WHY = {
    R.DISABLE.value: ("Turned off in its settings", "enabled = false in its file"),
    R.DELETE.value: ("Removed", "its file was removed"),
    R.SHUTDOWN.value: ("Stopped (the gateway was shutting down)", "starts again with the gateway"),
    R.NO_RESTART.value: ("Stopped: it ended and is set not to restart", ""),
}


def reason_kind(reason: str) -> str:
    """The planner's `Reason` a state's reason starts with ('' when none)."""
    for r in Reason:
        if reason == r.value or reason.startswith(r.value + ":"):
            return r.value
    return ""


def without_countdown(text: str) -> str:
    """A recorded reason without the countdown baked into it when it was written (the page
    shows one live countdown instead)."""
    return _FAILURE_RE.sub("", _COUNTDOWN_RE.sub("", text)).strip().rstrip(";:").strip()


def exit_words(last_exit: str | None) -> tuple[str, str]:
    """('it stopped with an error', 'exit code 3') from 'exited with code 3' and friends."""
    if not last_exit:
        return "", ""
    if m := _EXIT_RE.search(last_exit):
        code = int(m.group(1))
        if code == 0:
            return "it finished on its own", "exit code 0"
        return "it stopped with an error", f"exit code {code}"
    if m := _SIGNAL_RE.search(last_exit):
        name = m.group(2)
        if name in ("SIGKILL",):
            return "it was forced to stop", name
        if name in ("SIGTERM", "SIGINT", "SIGBREAK"):
            return "it was asked to stop", name
        if name in ("SIGSEGV", "SIGABRT", "SIGBUS", "SIGILL", "SIGFPE"):
            return "it crashed inside the program", name
        return "it was stopped from outside", name
    return "it ended", last_exit


def last_printed(lines: Sequence[str], count: int = 3) -> list[str]:
    """The last lines the program itself printed (not the gateway's own markers)."""
    own = [ln for ln in lines if ln.strip() and not ln.startswith("--- gateway:")]
    return own[-count:]


def _in(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def _hhmm(iso: str) -> str:
    """An ISO time on the laptop's clock, as '14:02'."""
    from datetime import datetime

    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M")


def duration(seconds: float | None) -> str:
    """'2 h 14 min', '5 min', '12 s'."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400} d {s % 86400 // 3600} h"
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 60} min" if s >= 60 else f"{s} s"


def server_words(s: dict[str, Any], log: Sequence[str] = ()) -> dict[str, Any]:
    """{status, tone, reason, details, countdown, printed} for one server view (`views.server_view`).

    `status` holds the one countdown ("… trying again in 16 s"); `countdown` is its wall-clock
    deadline (epoch seconds) so the page can tick it without a request; `reason` never repeats it.
    """
    phase, raw = s["phase"], s.get("reason") or ""
    kind = s.get("cause") or reason_kind(raw)
    rest = without_countdown(raw[len(kind):].lstrip(": ")) if kind and raw.startswith(kind) else without_countdown(raw)
    why, code = exit_words(s.get("last_exit"))
    wait = s.get("next_try_in_s")
    countdown = s.get("next_try_at_epoch") if wait is not None else None
    out: dict[str, Any] = {"tone": "idle", "reason": "", "details": "", "countdown": countdown, "printed": []}
    if s.get("config_stale"):
        out["config"] = (f"Your change to {s['name']}.toml has a mistake; the previous version keeps running."
                         if s.get("in_config") else f"{s['name']}.toml has a mistake; nothing was started.")
    if s.get("rolled_back"):
        out["change"] = (f"Your change was not applied: {_plain_failure(s['rolled_back'])}. "
                         "The previous version is running.")

    if phase == "running":
        health = s.get("health") or ""
        out.update(status="Running", tone="ok")
        if kind == R.ADOPTED.value:  # the typed cause, not the words of the reason
            out.update(status="Running (kept running while the gateway restarted)", details="same process as before")
        if health.startswith("failing"):
            out.update(status="Running, but not answering", tone="failing",
                       reason=f"{s.get('health_failures')} of {s.get('health_threshold')} checks in a row failed; "
                              "it is restarted if the next ones fail too.",
                       details=s.get("health_error") or health)
    elif phase == "starting":
        port = s.get("port")
        out.update(status="Starting…", tone="busy",
                   details=f"waiting for the first answer on port {port}" if port else "starting")
    elif phase == "stopping":
        out.update(status="Stopping…", tone="busy", details=raw)
    elif phase == "stopped":
        if s.get("stopped_by_operator"):
            since = f"since {_hhmm(s['ended_at'])} · " if s.get("ended_at") else ""
            until = "you start it, or the gateway restarts" if s.get("own") else "you start it"
            out.update(status="Stopped by you", details=f"{since}stays stopped until {until}")
        elif kind in _STOPPED_WHY:
            status, details = _STOPPED_WHY[kind]
            out.update(status=status, details=details or code)
            if kind == R.NO_RESTART.value and why:
                out["reason"] = why[0].upper() + why[1:] + "."
                out["printed"] = last_printed(log)
        else:
            out.update(status="Stopped", details=code)
    elif phase == "backoff" and kind == R.WAITING_FOR_INTERNET.value:
        out.update(status="Waiting for the internet", tone="busy",
                   details="this laptop has no internet now; it starts again as soon as the internet is back")
    elif phase in ("backoff", "exited"):
        failures = int(s.get("failures") or 0)
        if failures >= int(s.get("alert_after") or 5):
            head = f"Keeps crashing ({failures} times in a row)"
            if wait is None:
                head += " — still trying, we told you"
        elif kind == R.START_TIMEOUT.value:
            head = "Never answered after starting"
        elif kind == R.UNHEALTHY.value:
            head = "Stopped answering, so it was restarted"
        else:
            head = "Crashed"
        reason = why[0].upper() + why[1:] + "." if why else ""
        if kind in (R.START_TIMEOUT.value, R.UNHEALTHY.value) and rest:
            reason = rest[0].upper() + rest[1:] + "."
        out.update(head=head, tone="crashed", reason=reason,
                   details=" · ".join(x for x in (code, f"failure {failures} in a row" if failures else "") if x),
                   printed=last_printed(log))
    elif phase == "error":
        held = _HELD_RE.search(raw)
        if held:
            port, pid, prog = held.groups()
            who = f"another program ({prog})" if prog else "another program"
            out.update(head=f"Can't start: port {port} is used by {who}", tone="cant-start",
                       reason="Pick another port, or choose automatic, or stop that program.",
                       details=(f"pid {pid} · " if pid else "") + "we did not touch it")
        else:
            out.update(head="Can't start", tone="cant-start",
                       reason=(rest[0].upper() + rest[1:] + ".") if rest else "", details=raw)
    else:
        out.update(status=phase.capitalize(), details=raw)
    if "head" in out:  # one countdown: the page ticks `countdown`, this text is its first frame
        out["wait"] = _in(wait) if wait is not None else ""
        out["status"] = out["head"] + (f" — trying again in {out['wait']}" if wait is not None else "")
    else:
        out["head"], out["wait"], out["countdown"] = out["status"], "", None
    out["attention"] = out["tone"] in ATTENTION or bool(out.get("config")) or bool(out.get("change"))
    return out


def _plain_failure(why: str) -> str:
    """'the process exited: exited with code 2: Error: X' -> 'it stopped with an error (exit code 2): Error: X'."""
    text = why.removeprefix(f"{R.CRASH.value}: ")
    words, code = exit_words(text)
    if words:
        printed = text.split(": ", 1)[1] if ": " in text else ""
        return f"{words} ({code})" + (f": {printed}" if printed else "")
    return text


# --- events -------------------------------------------------------------------------------
_PHASE_WORDS = {"stopped": "stopped", "starting": "starting", "running": "running", "stopping": "stopping",
                "exited": "ended", "backoff": "waiting to try again", "error": "could not start"}
_KIND_WORDS = {
    "intent": "You asked", "error": "Could not start", "escalated": "Keeps crashing",
    "stop_escalated": "Did not stop in time, so it was forced to stop", "health_failed": "A check failed",
    "not_adopted": "Was not running any more after the gateway restarted", "forgotten": "Removed (its history stays)",
    "internal_error": "The gateway hit a bug", "config_error": "A settings file has a mistake",
    "config_fixed": "The settings file is fixed", "gateway_started": "The gateway started",
    "gateway_stopping": "The gateway is stopping", "gateway_stopped": "The gateway stopped",
    "database_exited": "The database stopped", "database_restarted": "The database is back",
    "tunnel_config": "The tunnel's settings were updated", "tunnel_unavailable": "The tunnel cannot run",
    "tunnel_handover": "The tunnel switched over", "tunnel_offline": "Not reachable from outside",
    "tunnel_online": "Reachable from outside again", "dns_synced": "Web address set up",
    "cloudflared_installed": "cloudflared installed", "cloudflared_failed": "cloudflared was not installed",
    "dns_failed": "Could not set up the web address", "dns_unavailable": "Web addresses cannot be set up",
    "sync_pulled": "Got new settings from git", "sync_failed": "Could not get settings from git",
    "backup_written": "Backup made", "backup_failed": "Backup failed", "config_written": "Settings saved from the page",
    "rolled_back": "Your change was not applied", "change_applied": "Your change is in force",
    "switched": "Switched to the new version without a gap", "tunnel_waiting": "Waiting for the internet",
}
_REASON_WORDS = {
    R.CREATE.value: "new server", R.CHANGE.value: "its settings changed", R.DELETE.value: "its file was removed",
    R.DISABLE.value: "turned off in its file", R.OPERATOR_STOP.value: "you stopped it",
    R.OPERATOR_START.value: "you started it", R.OPERATOR_RESTART.value: "you restarted it",
    R.OPERATOR_KILL.value: "you forced it to stop", R.CRASH.value: "it ended by itself",
    R.RETRY.value: "trying again", R.HEALTHY.value: "it answers", R.UP.value: "it started",
    R.UNHEALTHY.value: "it stopped answering", R.START_TIMEOUT.value: "it never answered after starting",
    R.NO_RESTART.value: "it is set not to restart", R.DEPENDENCY.value: "waiting for another server",
    R.SHUTDOWN.value: "the gateway was stopping",
    # reasons the loop is adding (reconciler/reasons.py); by value, so this works before and after
    "could not start": "it could not start", "no free port left": "no free port is left in the range",
    "adopted after a gateway restart": "kept running while the gateway restarted",
    "ended what was left of its process tree": "what was left of it was ended",
    R.ROLLBACK.value: "your change did not work, so the previous version runs again",
    R.PROMOTED.value: "your change ran well", R.WAITING_FOR_INTERNET.value: "waiting for the internet",
}


def event_kinds() -> list[tuple[str, str]]:
    """Every kind of event with its words, for the events page's filter (from the one enum)."""
    from reconciler.events import EventKind

    first = {"transition": "A server started or stopped"}
    return [(str(k), first.get(str(k)) or _KIND_WORDS.get(str(k)) or str(k).replace("_", " ").capitalize())
            for k in EventKind]


def event_words(e: dict[str, Any]) -> dict[str, str]:
    """{title, text, details} for one event row (kind, from/to phase, reason, actor, detail)."""
    kind, reason = e.get("kind") or "", e.get("reason") or ""
    detail = e.get("detail") or {}
    who = _actor(e.get("actor") or "")
    if kind == "transition" and e.get("to_phase"):
        to = _PHASE_WORDS.get(e["to_phase"], e["to_phase"])
        rk = reason_kind(reason)
        text = _REASON_WORDS.get(rk, "")
        if e["to_phase"] == "starting" and rk in (R.CRASH.value, R.RETRY.value):
            text = "trying again after it ended"
        extra = str(detail.get("detail") or "") if isinstance(detail, dict) else ""
        why, _code = exit_words(extra)
        if why and e["to_phase"] == "exited" and rk == R.CRASH.value:
            text = why  # "it stopped with an error": ended by itself goes without saying
        elif why and e["to_phase"] in ("exited", "stopped"):
            text = f"{text}; {why}" if text else why
        if "adopted" in reason:
            text = "kept running while the gateway restarted"
        held = _HELD_RE.search(extra or reason)
        if held and e["to_phase"] == "error":
            prog = held.group(3)
            text = f"port {held.group(1)} is used by another program" + (f" ({prog})" if prog else "")
        title = to[0].upper() + to[1:]
        details = " · ".join(x for x in (f"{e.get('from_phase') or '-'} → {e['to_phase']}", without_countdown(
            reason + (f": {extra}" if extra and extra not in reason else ""))) if x)
        if who and "operator" in rk:
            text = text.replace("you ", f"you ({who}) ", 1)
        return {"title": title, "text": text, "details": details}
    title = _KIND_WORDS.get(kind, kind.replace("_", " ").capitalize())
    if kind == "config_error" and isinstance(detail, dict) and detail.get("path"):
        file = str(detail["path"]).replace("\\", "/").rsplit("/", 1)[-1]
        where = f" on line {detail['line']}" if detail.get("line") else ""
        key = f"{detail['key']}: " if detail.get("key") else ""
        return {"title": f"Your change to {file} has a mistake{where}",
                "text": "nothing was stopped: what ran before keeps running",
                "details": f"{key}{detail.get('message') or reason}"}
    if kind == "escalated" and isinstance(detail, dict) and detail.get("failures"):
        n = int(detail["failures"])
        return {"title": "Keeps crashing", "text": f"{n} time{'s' if n != 1 else ''} in a row; still trying, and we "
                "sent you an alert if alerts are set up", "details": f"{kind}: {reason}"}
    if kind == "error" and (held := _HELD_RE.search(reason)):
        prog = held.group(3)
        return {"title": "Could not start", "text": f"port {held.group(1)} is used by another program" +
                (f" ({prog})" if prog else ""), "details": f"{kind}: {reason}"}
    if kind == "intent" and who:
        title = f"{who[0].upper()}{who[1:]} asked"
    return {"title": title, "text": _plain_reason(without_countdown(reason)), "details": f"{kind}: {reason}"}


def _plain_reason(text: str) -> str:
    swaps = (("retrying after backoff", "trying again"), ("still retrying with backoff", "still trying"),
             ("operator", "you"), ("escalated", "kept failing"), ("adopted", "kept running"))
    for a, b in swaps:
        text = text.replace(a, b)
    return text


def _actor(actor: str) -> str:
    """'operator:web:ada' -> 'ada'; 'gateway' -> ''."""
    if actor.startswith("operator:"):
        return actor.rsplit(":", 1)[-1]
    return ""
