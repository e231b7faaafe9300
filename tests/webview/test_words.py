"""The page's words (pure): phases, reasons, exits and events as the owner reads them."""

from __future__ import annotations

from webview.infra.words import event_words, exit_words, last_printed, server_words

# the typed facts the engine hands over (reconciler/core/facts.py), as the view carries them
CODE3 = {"code": 3, "signal": None, "signal_name": None, "by": "itself", "leftovers": 0}
CRASHED = {"name": "bot", "phase": "backoff", "reason": "the process exited: failure 2 in a row",
           "cause": "the process exited", "ended": CODE3, "next_try_in_s": 11.6, "next_try_at_epoch": 2e9,
           "failures": 2, "alert_after": 5}


def sig(number: int, name: str, by: str) -> dict[str, object]:
    return {"code": None, "signal": number, "signal_name": name, "by": by, "leftovers": 0}


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
                         "cause": "could not start", "reason": "could not start: port 8080 is held by pid 1234 (nginx)",
                         "held": {"port": 8080, "pid": 1234, "program": "nginx"}})
    assert held["status"] == "Can't start: port 8080 is used by another program (nginx) — trying again in 4 s"
    assert held["details"] == "pid 1234 · we did not touch it" and "another port" in held["reason"]


def test_plain_words_for_quiet_states() -> None:
    assert server_words({"name": "a", "phase": "running", "reason": "health check passed"})["status"] == "Running"
    adopted = server_words({"name": "a", "phase": "running", "reason": "adopted after a gateway restart: pid 4"})
    assert adopted["status"] == "Running (kept running while the gateway restarted)"
    mine = server_words({"name": "a", "phase": "stopped", "reason": "stopped by operator",
                         "stopped_by_operator": True, "ended": sig(15, "SIGTERM", "asked")})
    assert mine["status"] == "Stopped by you" and not mine["attention"]
    starting = server_words({"name": "a", "phase": "starting", "reason": "new server", "port": 8081})
    assert starting["status"] == "Starting…" and starting["details"] == "waiting for the first answer on port 8081"
    stale = server_words({"name": "blog", "phase": "running", "reason": "", "config_stale": True, "in_config": True})
    assert "blog.toml has a mistake; the previous version keeps running" in stale["config"] and stale["attention"]


def test_exits_in_words_say_who_ended_it() -> None:
    assert exit_words(sig(15, "SIGTERM", "asked")) == ("it stopped when asked", "SIGTERM")
    # a kill -9 from a terminal is not the gateway's doing (it was "it was forced to stop")
    assert exit_words(sig(9, "SIGKILL", "outside")) == ("something outside the gateway killed it",
                                                       "SIGKILL · not sent by the gateway")
    assert exit_words({**sig(9, "SIGKILL", "forced"), "leftovers": 2}) == (
        "it did not stop in time, so the gateway forced it to stop", "SIGKILL · 2 more processes ended")
    assert exit_words(sig(9, "SIGKILL", "owner_kill")) == ("you forced it to stop", "SIGKILL")
    assert exit_words(sig(11, "SIGSEGV", "itself")) == ("it crashed inside the program", "SIGSEGV")
    assert exit_words({**CODE3, "code": 0}) == ("it finished on its own", "exit code 0")
    assert exit_words(None) == ("", "")
    assert last_printed(["", "a", "b", "c", "d"], 2) == ["c", "d"]


def test_words_parse_no_english() -> None:
    """The page writes from facts: the engine's reason text decides nothing (the regexes are gone)."""
    import webview.infra.words as words

    assert not [n for n in vars(words) if n.endswith("_RE")]
    lying = {**CRASHED, "reason": "port 80 is held by pid 1 (x); exited with code 9; next try in 99s"}
    w = server_words(lying)
    assert w["details"] == "exit code 3 · failure 2 in a row" and "99" not in w["status"] + w["reason"]


def test_events_in_words_never_say_sigterm_or_backoff() -> None:
    stop = event_words({"kind": "transition", "from_phase": "stopping", "to_phase": "stopped",
                        "reason": "stopped by operator", "actor": "operator:web:ada",
                        "detail": {"detail": "killed by signal 15 (SIGTERM)", "exit": sig(15, "SIGTERM", "asked")}})
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
                     "detail": {"detail": "port 20006 is held by pid 12254 (python)", "failures": 2,
                                "held": {"port": 20006, "pid": 12254, "program": "python"}}})
    assert t["title"] == "Could not start" and t["text"] == "port 20006 is used by another program (python)"
    e = event_words({"kind": "error", "reason": "port 20006 is held by pid 12254 (python)",
                     "detail": {"port": 20006, "holder_pid": 12254, "holder_name": "python"}})
    assert e["text"] == "port 20006 is used by another program (python)" and "pid 12254" in e["details"]


def test_crash_and_keeps_crashing_events_read_once() -> None:
    ended = event_words({"kind": "transition", "from_phase": "running", "to_phase": "exited",
                         "reason": "the process exited", "detail": {"detail": "exited with code 4",
                                                                     "exit": {**CODE3, "code": 4}}})
    assert ended["text"] == "it stopped with an error" and "exit code" not in ended["text"]
    keeps = event_words({"kind": "escalated", "reason": "1 failures in a row; still retrying with backoff",
                         "detail": {"failures": 1}})
    assert keeps["text"].startswith("1 time in a row; still trying")


def test_running_but_not_answering_keeps_its_cause_through_the_restarts() -> None:
    check = {"error": "HTTP 500 from http://127.0.0.1:8080/health", "problem": "status", "status": 500,
             "failures": 3, "restarts": 2, "since_wall": 2e9}
    base = {"name": "api", "not_answering": check, "health_threshold": 3, "alert_after": 5}
    running = server_words({**base, "phase": "running", "health_failures": 1})
    assert running["status"] == "Running, but not answering" and running["tone"] == "failing"
    assert running["reason"].startswith("Its check gets HTTP 500 (1 of 3 checks in a row)")
    starting = server_words({**base, "phase": "starting", "port": 8080})  # was "Starting… waiting for the first answer"
    assert starting["status"] == "Not answering — restarted, waiting for an answer" and starting["attention"]
    assert "HTTP 500" in starting["reason"] + starting["details"] and "restarted 2 times so far" in starting["reason"]
    waiting = server_words({**base, "phase": "backoff", "cause": "health check failing", "failures": 2,
                            "next_try_in_s": 8, "next_try_at_epoch": 2e9, "ended": sig(15, "SIGTERM", "asked")})
    assert waiting["status"] == "Not answering — trying again in 8 s"  # was "Crashed — it was asked to stop"
    assert "SIGTERM" not in waiting["status"] + waiting["reason"] and waiting["tone"] == "failing"


def test_a_failing_check_command_is_its_own_cause() -> None:
    check = {"error": "check.cmd exited with code 1: database unreachable", "problem": "command", "failures": 1}
    w = server_words({"name": "db", "phase": "running", "not_answering": check, "health_threshold": 3,
                      "health_failures": 1})
    assert w["reason"].startswith("Its check command says something is wrong")


def test_a_change_not_applied_and_its_retry_under_way() -> None:
    w = server_words({"name": "web", "phase": "running", "rolled_back": "the process exited: exited with code 2",
                      "rolled_back_facts": {"cause": "the process exited", "exit": {**CODE3, "code": 2}}})
    assert w["change"] == ("Your change was not applied: it stopped with an error (exit code 2). "
                           "The previous version is running.") and w["attention"]
    trying = server_words({"name": "web", "phase": "running", "replacing": True})
    assert trying["trying"] == "Trying your change next to the running version…" and not trying.get("change")


def test_who_asked_is_the_owner_only_when_it_was() -> None:
    woke = event_words({"kind": "intent", "reason": "restart requested", "actor": "resume"})
    assert woke["title"] == "After the laptop woke up, the gateway asked"  # was "You asked"
    assert event_words({"kind": "intent", "reason": "stop requested", "actor": "operator:cli"})["title"] == "You asked"
    assert event_words({"kind": "intent", "reason": "stop requested", "actor": "operator:web:ada"})["title"] == "Ada asked"
    boot = event_words({"kind": "transition", "from_phase": "stopped", "to_phase": "starting",
                        "reason": "started with the gateway"})
    assert boot["text"] == "the gateway started"  # was "new server"
    woke_stop = event_words({"kind": "transition", "from_phase": "running", "to_phase": "stopping",
                             "reason": "restarted after the laptop woke up"})
    assert "you" not in woke_stop["text"]


def test_the_health_word_of_every_kind_of_check() -> None:
    """A program with no web page has no threshold of failed checks (mypy --strict found the card's
    health word reading one: an AttributeError, a 500, once such a program counted a failure)."""
    from reconciler.core.spec import ServerSpec
    from reconciler.core.state import Phase
    from webview.infra.views import _health_word

    def spec(health: dict[str, object]) -> ServerSpec:
        return ServerSpec.model_validate({"name": "x", "command": ["x"], "health": health})

    bot, web = spec({"type": "running"}), spec({"type": "http", "failures": 4})
    assert _health_word(Phase.RUNNING, bot, 0, None) == "ok"
    assert _health_word(Phase.RUNNING, bot, 2, "it exited") == "failing (2): it exited"
    assert _health_word(Phase.RUNNING, web, 2, "timed out") == "failing (2 of 4): timed out"
    assert _health_word(Phase.STARTING, web, 0, None) == "starting"
    assert _health_word(Phase.RUNNING, spec({"type": "none"}), 0, None) == "no check"
    assert _health_word(Phase.STOPPED, web, 0, None) == "-"
