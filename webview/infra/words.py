"""The page's words: a server's phase, reason and last exit as the owner reads them
(see VOICE.md), with the precise terms kept for a small "details" line. Pure: no I/O.

Keyed on the phase, the planner's typed `Reason` (`cause`) and the engine's typed facts
(reconciler/core/facts.py: how a run ended and who ended it, the program holding a port, the
check that does not answer, the next try); nothing here parses the engine's English.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reconciler.core.actions import Reason
from webview.infra.fact_words import change_failed_words, check_words, exit_words, held_words

R = Reason
ATTENTION = ("crashed", "cant-start", "failing", "config")  # tones that put a card first
__all__ = ["exit_words", "server_words", "event_words", "event_kinds", "last_printed", "duration"]

# what a stop or a crash reason means, for the details line and the status
_STOPPED_WHY = {
    R.DISABLE.value: ("Turned off in its settings", "enabled = false in its file"),
    R.DELETE.value: ("Removed", "its file was removed"),
    R.SHUTDOWN.value: ("Stopped (the gateway was shutting down)", "starts again with the gateway"),
    R.NO_RESTART.value: ("Stopped: it ended and is set not to restart", ""),
}


def reason_kind(reason: str) -> str:
    """The planner's `Reason` an event row's reason is ('' when none): the row holds the
    enum's value itself (an older row may add ': detail')."""
    for r in Reason:
        if reason == r.value or reason.startswith(r.value + ":"):
            return r.value
    return ""


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
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M")


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch).astimezone().strftime("%H:%M")


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


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "." if text else ""


def _not_answering(s: dict[str, Any], check: dict[str, Any], out: dict[str, Any]) -> None:
    """Running but not answering, through the restarts it causes: the check's result is the
    reason, wherever the server is in its restarts."""
    phase, restarts = s["phase"], int(check.get("restarts") or 0)
    since = f" since {_clock(check['since_wall'])}" if check.get("since_wall") else ""
    if phase == "running":
        done, limit = s.get("health_failures") or check.get("failures") or 1, s.get("health_threshold")
        count = f" ({done} of {limit} checks in a row)" if limit else ""
        then = "it is restarted if the next one fails too" if limit and int(done) + 1 >= int(limit) else             "it is restarted if it keeps failing"
        out.update(head="Running, but not answering", reason=_sentence(f"{check_words(check)}{count}; {then}"))
    else:
        head = "Not answering"
        if phase == "starting":
            head += " — restarted, waiting for an answer"
        elif phase == "stopping":
            head += " — restarting it"
        again = f"; restarted {'once' if restarts == 1 else f'{restarts} times'} so far" if restarts else ""
        out.update(head=head, reason=_sentence(f"{check_words(check)}{since}{again}"))
    out.update(tone="failing", details=check.get("error") or "")


def server_words(s: dict[str, Any], log: Sequence[str] = ()) -> dict[str, Any]:
    """{status, tone, reason, details, countdown, printed} for one server view (`views.server_view`).

    `status` holds the one countdown ("… trying again in 16 s"); `countdown` is its wall-clock
    deadline (epoch seconds) so the page can tick it without a request; `reason` never repeats it.
    """
    phase = s["phase"]
    kind = s.get("cause") or reason_kind(s.get("reason") or "")
    why, code = exit_words(s.get("ended"))
    wait = s.get("next_try_in_s")
    countdown = s.get("next_try_at_epoch") if wait is not None else None
    check = s.get("not_answering")
    out: dict[str, Any] = {"tone": "idle", "reason": "", "details": "", "countdown": countdown, "printed": []}
    if s.get("config_stale"):
        out["config"] = (f"Your change to {s['name']}.toml has a mistake; the previous version keeps running."
                         if s.get("in_config") else f"{s['name']}.toml has a mistake; nothing was started.")
    if s.get("rolled_back"):
        words, engine = change_failed_words(s.get("rolled_back_facts"), s["rolled_back"])
        out["change"] = f"Your change was not applied: {words}. The previous version is running."
        out["change_details"] = engine
    if s.get("replacing"):
        out["trying"] = "Trying your change next to the running version…"

    if check and phase in ("running", "starting", "stopping", "exited", "backoff"):
        _not_answering(s, check, out)
        if phase in ("exited", "backoff"):
            out["printed"] = last_printed(log)
    elif phase == "running":
        out.update(status="Running", tone="ok")
        if kind == R.ADOPTED.value:  # the typed cause, not the words of the reason
            out.update(status="Running (kept running while the gateway restarted)", details="same process as before")
        if s.get("health_failures"):
            out.update(status="Running, but not answering", tone="failing",
                       reason=_sentence(f"{check_words(None)} ({s.get('health_failures')} of "
                                        f"{s.get('health_threshold')} checks in a row)"),
                       details=s.get("health_error") or "")
    elif phase == "starting":
        port = s.get("port")
        out.update(status="Starting…", tone="busy",
                   details=f"waiting for the first answer on port {port}" if port else "starting")
        if s.get("min_uptime"):  # no web page: working once it has kept running that long
            out["details"] = f"it counts as working once it has kept running {s['min_uptime']:g} s"
    elif phase == "stopping":
        because = _REASON_WORDS.get(kind, "")
        out.update(status="Stopping…", tone="busy", details=because)
    elif phase == "stopped":
        if s.get("stopped_by_operator"):
            since = f"since {_hhmm(s['ended_at'])} · " if s.get("ended_at") else ""
            until = "you start it, or the gateway restarts" if s.get("own") else "you start it"
            out.update(status="Stopped by you", details=f"{since}stays stopped until {until}")
        elif kind in _STOPPED_WHY:
            status, details = _STOPPED_WHY[kind]
            out.update(status=status, details=details or code)
            if kind == R.NO_RESTART.value and why:
                out["reason"] = _sentence(why)
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
        else:
            head = "Crashed"
        out.update(head=head, tone="crashed", reason=_sentence(why),
                   details=" · ".join(x for x in (code, f"failure {failures} in a row" if failures else "") if x),
                   printed=last_printed(log))
    elif phase == "error":
        held, pid_line = held_words(s.get("held"))
        if held:
            out.update(head=f"Can't start: {held}", tone="cant-start",
                       reason="Pick another port, or choose automatic, or stop that program.", details=pid_line)
        elif kind == R.NO_FREE_PORT.value:
            out.update(head="Can't start: no free port is left", tone="cant-start",
                       reason="Widen the port range in Settings, or stop a server you no longer need.")
        else:
            out.update(head="Can't start", tone="cant-start", reason="The program could not be started.",
                       details=s.get("start_error") or "")
    else:
        out.update(status=phase.capitalize(), details=_REASON_WORDS.get(kind, ""))
    if "head" in out:  # one countdown: the page ticks `countdown`, this text is its first frame
        out["wait"] = _in(wait) if wait is not None and phase in ("backoff", "error") else ""
        if not out["wait"]:
            out["countdown"] = None
        out["status"] = out["head"] + (f" — trying again in {out['wait']}" if out["wait"] else "")
    else:
        out["head"], out["wait"], out["countdown"] = out["status"], "", None
    out["attention"] = out["tone"] in ATTENTION or bool(out.get("config")) or bool(out.get("change"))
    return out


# --- events -------------------------------------------------------------------------------
_PHASE_WORDS = {"stopped": "stopped", "starting": "starting", "running": "running", "stopping": "stopping",
                "exited": "ended", "backoff": "waiting to try again", "error": "could not start"}
_KIND_WORDS = {
    "intent": "You asked", "error": "Could not start", "escalated": "Keeps crashing",
    "stop_escalated": "Did not stop in time, so the gateway forced it to stop", "health_failed": "A check failed",
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
    "dark": "Nobody could reach the public servers",
    "change_trying": "Trying the new version next to the running one",
}
_REASON_WORDS = {
    R.CREATE.value: "new server", R.CHANGE.value: "its settings changed", R.DELETE.value: "its file was removed",
    R.DISABLE.value: "turned off in its file", R.OPERATOR_STOP.value: "you stopped it",
    R.OPERATOR_START.value: "you started it", R.OPERATOR_RESTART.value: "you restarted it",
    R.OPERATOR_KILL.value: "you forced it to stop", R.CRASH.value: "it ended by itself",
    R.RETRY.value: "trying again", R.HEALTHY.value: "it answers", R.UP.value: "it started",
    R.KEPT_RUNNING.value: "it kept running",
    R.UNHEALTHY.value: "it stopped answering", R.START_TIMEOUT.value: "it never answered after starting",
    R.NO_RESTART.value: "it is set not to restart", R.DEPENDENCY.value: "waiting for another server",
    R.SHUTDOWN.value: "the gateway was stopping", R.BOOT.value: "the gateway started",
    R.WOKE_UP.value: "the gateway restarted it after the laptop woke up",
    R.START_FAILED.value: "it could not start", R.NO_FREE_PORT.value: "no free port is left in the range",
    R.ADOPTED.value: "kept running while the gateway restarted",
    R.ROLLBACK.value: "your change did not work, so the previous version runs again",
    R.PROMOTED.value: "your change ran well", R.WAITING_FOR_INTERNET.value: "waiting for the internet",
}
# who asked, when it was not the owner (an intent's actor)
_AUTOMATIC = {"resume": "After the laptop woke up, the gateway asked", "gateway": "The gateway asked",
              "config": "A settings file asked"}


def event_kinds() -> list[tuple[str, str]]:
    """Every kind of event with its words, for the events page's filter (from the one enum)."""
    from reconciler.core.events import EventKind

    first = {"transition": "A server started or stopped"}
    return [(str(k), first.get(str(k)) or _KIND_WORDS.get(str(k)) or str(k).replace("_", " ").capitalize())
            for k in EventKind]


def _facts_line(detail: dict[str, Any]) -> str:
    """The precise terms of a row's typed facts, for its details line."""
    parts = []
    if detail.get("exit"):
        parts.append(exit_words(detail["exit"])[1])
    if detail.get("failures"):
        parts.append(f"failure {detail['failures']} in a row")
    if detail.get("check"):
        parts.append(str(detail["check"].get("error") or ""))
    if detail.get("held"):
        parts.append(held_words(detail["held"])[1])
    if detail.get("start_error"):
        parts.append(str(detail["start_error"]))
    return " · ".join(p for p in parts if p)


def _transition_words(e: dict[str, Any], detail: dict[str, Any], who: str) -> dict[str, str]:
    to, reason = e["to_phase"], e.get("reason") or ""
    rk = reason_kind(reason)
    text = _REASON_WORDS.get(rk, "")
    if to == "starting" and rk == R.CRASH.value:
        text = "trying again after it ended"
    if to == "starting" and rk in (R.UNHEALTHY.value, R.START_TIMEOUT.value):
        text = "trying again: it did not answer"
    exit_fact = detail.get("exit") or {}
    why = exit_words(exit_fact)[0] if exit_fact.get("by") != "asked" else ""  # (the stop row said why)
    if why and to == "exited" and rk == R.CRASH.value:
        text = why  # "it stopped with an error": ended by itself goes without saying
    elif why and to in ("exited", "stopped") and rk not in (R.OPERATOR_KILL.value,):
        text = f"{text}; {why}" if text else why
    if detail.get("check") and to == "stopping":  # the decision: said once, with the check's result
        text = f"{text}: {check_words(detail['check'])}" if text else check_words(detail["check"])
    if to == "error" and detail.get("held"):
        text = held_words(detail["held"])[0]
    if who and "operator" in rk:
        text = text.replace("you ", f"you ({who}) ", 1)
    facts = _facts_line(detail)
    if not facts and detail.get("detail") and not any(k in detail for k in ("exit", "failures", "held", "check")):
        facts = str(detail["detail"])  # a row written before the typed facts: the engine's words, as they were
    details = " · ".join(x for x in (f"{e.get('from_phase') or '-'} → {to}", facts) if x)
    title = _PHASE_WORDS.get(to, to)
    return {"title": title[0].upper() + title[1:], "text": text, "details": details}


def event_words(e: dict[str, Any]) -> dict[str, str]:
    """{title, text, details} for one event row (kind, from/to phase, reason, actor, detail)."""
    kind, reason = e.get("kind") or "", e.get("reason") or ""
    detail = e.get("detail") if isinstance(e.get("detail"), dict) else {}
    assert isinstance(detail, dict)
    actor = e.get("actor") or ""
    who = _actor(actor)
    if kind == "transition" and e.get("to_phase"):
        return _transition_words(e, detail, who)
    title = _KIND_WORDS.get(kind, kind.replace("_", " ").capitalize())
    if kind == "config_error" and detail.get("path"):
        file = str(detail["path"]).replace("\\", "/").rsplit("/", 1)[-1]
        where = f" on line {detail['line']}" if detail.get("line") else ""
        key = f"{detail['key']}: " if detail.get("key") else ""
        return {"title": f"Your change to {file} has a mistake{where}",
                "text": "nothing was stopped: what ran before keeps running",
                "details": f"{key}{detail.get('message') or reason}"}
    if kind == "escalated" and detail.get("failures"):
        n = int(detail["failures"])
        return {"title": "Keeps crashing", "text": f"{n} time{'s' if n != 1 else ''} in a row; still trying, and we "
                "sent you an alert if alerts are set up", "details": f"{kind}: {reason}"}
    if kind == "error" and detail.get("port") is not None:
        held, pid_line = held_words({"port": detail["port"], "pid": detail.get("holder_pid"),
                                     "program": detail.get("holder_name")})
        return {"title": "Could not start", "text": held, "details": pid_line}
    if kind == "rolled_back":
        words, engine = change_failed_words(detail, str(detail.get("why") or reason))
        return {"title": title, "text": f"{words}; the previous version runs", "details": engine}
    if kind == "intent":
        if who:
            title = f"{who[0].upper()}{who[1:]} asked"
        elif not actor.startswith("operator"):
            title = _AUTOMATIC.get(actor.split(":", 1)[0], "The gateway asked")
    return {"title": title, "text": _plain_reason(reason), "details": f"{kind}: {reason}"}


def _plain_reason(text: str) -> str:
    swaps = (("retrying after backoff", "trying again"), ("still retrying with backoff", "still trying"),
             ("operator", "you"), ("escalated", "kept failing"), ("adopted", "kept running"))
    for a, b in swaps:
        text = text.replace(a, b)
    return text


def _actor(actor: str) -> str:
    """'operator:web:ada' -> 'ada'; 'operator:cli', 'gateway' -> ''."""
    parts = actor.split(":")
    return parts[2] if len(parts) >= 3 and parts[0] == "operator" else ""
