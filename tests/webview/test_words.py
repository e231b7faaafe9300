"""The page's words (pure): phases, reasons, exits and events as the owner reads them."""

from __future__ import annotations

from webview.words import event_words, exit_words, last_printed, server_words, without_countdown

CRASHED = {"name": "bot", "phase": "backoff", "reason": "the process exited: failure 2 in a row; next try in 16s",
           "last_exit": "exited with code 3", "next_try_in_s": 11.6, "next_try_at_epoch": 2e9, "failures": 2,
           "alert_after": 5}


def test_a_crash_says_why_and_when_once() -> None:
    w = server_words(CRASHED, ["starting", "Error: TOKEN not set", "--- gateway: pid 9 exited with code 3 ---"])
    assert w["status"] == "Crashed — trying again in 12 s"
    assert w["reason"] == "It stopped with an error." and "16" not in w["reason"] + w["details"]
    assert w["details"] == "exit code 3 · failure 2 in a row"
    assert w["printed"] == ["starting", "Error: TOKEN not set"]  # not the gateway's own marker
    assert w["countdown"] == 2e9 and w["attention"]


def test_keeps_crashing_and_port_held() -> None:
    w = server_words({**CRASHED, "failures": 6})
    assert w["status"].startswith("Keeps crashing (6 times in a row) — trying again in")
    held = server_words({"name": "web", "phase": "error", "next_try_in_s": 4.2, "next_try_at_epoch": 2e9,
                         "reason": "retrying after backoff: port 8080 is held by pid 1234 (nginx); next try in 4s"})
    assert held["status"] == "Can't start: port 8080 is used by another program (nginx) — trying again in 4 s"
    assert held["details"] == "pid 1234 · we did not touch it" and "another port" in held["reason"]


def test_plain_words_for_quiet_states() -> None:
    assert server_words({"name": "a", "phase": "running", "reason": "health check passed"})["status"] == "Running"
    adopted = server_words({"name": "a", "phase": "running", "reason": "adopted after a gateway restart: pid 4"})
    assert adopted["status"] == "Running (kept running while the gateway restarted)"
    mine = server_words({"name": "a", "phase": "stopped", "reason": "stopped by operator",
                         "stopped_by_operator": True, "last_exit": "killed by signal 15 (SIGTERM)"})
    assert mine["status"] == "Stopped by you" and not mine["attention"]
    starting = server_words({"name": "a", "phase": "starting", "reason": "new server", "port": 8081})
    assert starting["status"] == "Starting…" and starting["details"] == "waiting for the first answer on port 8081"
    stale = server_words({"name": "blog", "phase": "running", "reason": "", "config_stale": True, "in_config": True})
    assert "blog.toml has a mistake; the previous version keeps running" in stale["config"] and stale["attention"]


def test_exits_in_words() -> None:
    assert exit_words("killed by signal 15 (SIGTERM)") == ("it was asked to stop", "SIGTERM")
    assert exit_words("killed by signal 9 (SIGKILL)") == ("it was forced to stop", "SIGKILL")
    assert exit_words("exited with code 0") == ("it finished on its own", "exit code 0")
    assert without_countdown("retrying after backoff: boom; next try in 16s") == "retrying after backoff: boom"
    assert last_printed(["", "a", "b", "c", "d"], 2) == ["c", "d"]


def test_events_in_words_never_say_sigterm_or_backoff() -> None:
    stop = event_words({"kind": "transition", "from_phase": "stopping", "to_phase": "stopped",
                        "reason": "stopped by operator", "actor": "operator:web:ada",
                        "detail": {"detail": "killed by signal 15 (SIGTERM)"}})
    assert stop["title"] == "Stopped" and "you (ada) stopped it" in stop["text"]
    assert "SIGTERM" not in stop["title"] + stop["text"] and "SIGTERM" in stop["details"]
    retry = event_words({"kind": "escalated", "reason": "5 failures in a row; still retrying with backoff"})
    assert retry["title"] == "Keeps crashing" and "backoff" not in retry["text"]


def test_a_config_error_event_names_the_file_and_line() -> None:
    w = event_words({"kind": "config_error", "reason": "/x/gateway.d/blog.toml:3:1: port: 70000 is not a port",
                     "detail": {"path": "/x/gateway.d/blog.toml", "line": 3, "key": "port",
                                "message": "70000 is not a port (1-65535)"}})
    assert w["title"] == "Your change to blog.toml has a mistake on line 3"
    assert "nothing was stopped" in w["text"] and w["details"] == "port: 70000 is not a port (1-65535)"


def test_stopped_by_you_says_since_when() -> None:
    w = server_words({"name": "a", "phase": "stopped", "reason": "stopped by operator", "stopped_by_operator": True,
                      "ended_at": "2026-12-01T14:02:00+00:00"})
    from datetime import datetime

    local = datetime.fromisoformat("2026-12-01T14:02:00+00:00").astimezone().strftime("%H:%M")
    assert w["status"] == "Stopped by you" and w["details"] == f"since {local} · stays stopped until you start it"


def test_a_held_port_event_in_words() -> None:
    t = event_words({"kind": "transition", "from_phase": "error", "to_phase": "error", "reason": "could not start",
                     "detail": {"detail": "port 20006 is held by pid 12254 (python); next try in 4s"}})
    assert t["title"] == "Could not start" and t["text"] == "port 20006 is used by another program (python)"
    e = event_words({"kind": "error", "reason": "port 20006 is held by pid 12254 (python)"})
    assert e["text"] == "port 20006 is used by another program (python)" and "pid 12254" in e["details"]


def test_crash_and_keeps_crashing_events_read_once() -> None:
    ended = event_words({"kind": "transition", "from_phase": "running", "to_phase": "exited",
                         "reason": "the process exited", "detail": {"detail": "exited with code 4"}})
    assert ended["text"] == "it stopped with an error" and "exit code" not in ended["text"]
    keeps = event_words({"kind": "escalated", "reason": "1 failures in a row; still retrying with backoff",
                         "detail": {"failures": 1}})
    assert keeps["text"].startswith("1 time in a row; still trying")
