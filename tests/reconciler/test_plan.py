"""plan(desired, observed, now): tables of situations -> actions, and properties. No I/O."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.actions import Answered, Forget, Kill, Mark, Promote, Reason, Replace, RollBack, Start, Stop
from reconciler.core.backoff import Backoff
from reconciler.core.plan import plan
from reconciler.core.rollout import in_force
from reconciler.core.spec import ServerSpec
from reconciler.core.state import Desired, Observed, Phase, ServerState

P = Phase
NOW = 1000.0


def spec(name: str = "web", **kw: object) -> ServerSpec:
    data: dict[str, object] = {"name": name, "command": ["python", "-m", "http.server", "{port}"], "port": 8080}
    data.update(kw)
    return ServerSpec.model_validate(data)


def running(s: ServerSpec, **kw: object) -> ServerState:
    base = ServerState(s.name, P.RUNNING, pid=42, create_time=1.0, port=8080, spec_hash=s.runtime_hash(),
                       started_at=NOW - 100, healthy_since=NOW - 99)
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def run_plan(specs: list[ServerSpec], states: list[ServerState], stopped: frozenset[str] = frozenset(),
             ports: dict[str, int] | None = None, busy: frozenset[int] = frozenset(), now: float = NOW,
             good: list[ServerSpec] | None = None, failed: dict[str, str] | None = None,
             known: list[ServerSpec] = (), answered: list[ServerSpec] | None = None):
    """`good`: the last good versions (default: the files' own, a steady state); `answered`: the
    versions that last ran and answered (default: the good ones)."""
    good = specs if good is None else good
    desired = Desired({s.name: s for s in specs}, stopped, (20000, 20010),
                      last_good={s.name: s for s in good}, failed=failed or {},
                      last_known={s.name: s for s in known},
                      answered={s.name: s for s in (good if answered is None else answered)})
    observed = Observed({s.name: s for s in states}, ports or {}, busy)
    return plan(desired, observed, now)


def test_new_server_is_started_with_its_port():
    s = spec()
    p = run_plan([s], [])
    assert p.actions == (Start("web", s, 8080, Reason.CREATE),)


def test_auto_port_is_sticky_and_skips_taken_and_busy_ports():
    a, b = spec("a", port="auto"), spec("b", port=20000)
    assert run_plan([a, b], [], ports={"a": 20005}).actions[0] == Start("a", a, 20005, Reason.CREATE)
    # no sticky port: the first one not fixed by b and not busy
    first = run_plan([a, b], [], busy=frozenset({20001})).actions[0]
    assert isinstance(first, Start) and first.port == 20002
    # the sticky port is busy (held by a foreign program): another one
    moved = run_plan([a, b], [], ports={"a": 20005}, busy=frozenset({20005})).actions[0]
    assert isinstance(moved, Start) and moved.port == 20001


def test_auto_ports_handed_out_in_one_pass_are_distinct():
    # a batch of new files (git pull): every server gets its own port in the same plan
    specs = [spec(f"s{i}", port="auto") for i in range(5)]
    starts = run_plan(specs, [], ports={"s3": 20000}).actions
    ports = {a.name: a.port for a in starts if isinstance(a, Start)}
    assert ports["s3"] == 20000 and len(set(ports.values())) == 5


def test_no_free_port_is_an_error_not_a_crash():
    a = spec("a", port="auto")
    p = run_plan([a], [], busy=frozenset(range(20000, 20011)))
    assert p.actions == (Mark("a", P.ERROR, Reason.NO_FREE_PORT, "every port in 20000-20010 is taken",
                              next_try_at=NOW + 1.0, failures=1),)
    assert p.requeue_after == 1.0


@pytest.mark.parametrize("failures, waits", [(1, 1.0), (2, 1.0), (3, 2.0), (4, 4.0), (12, 300.0)])
def test_no_free_port_backs_off_like_a_failed_start(failures: int, waits: float):
    # out of ports: each retry counts as a failed start and waits longer (it used to re-mark
    # the server on every pass and spin a core, 10,000 events in 18 s)
    a = spec("a", port="auto")
    full = frozenset(range(20000, 20011))
    err = ServerState("a", P.ERROR, failures=failures, next_try_at=NOW - 0.1, cause=Reason.NO_FREE_PORT)
    (mark,) = run_plan([a], [err], busy=full).actions
    assert isinstance(mark, Mark) and mark.to is P.ERROR and mark.failures == failures + 1
    assert mark.next_try_at == NOW + min(300.0, max(1.0, Backoff().delay(failures + 1)))
    # ... and until then, nothing at all: no action, one timer
    waiting = dataclasses.replace(err, failures=failures + 1, next_try_at=mark.next_try_at)
    again = run_plan([a], [waiting], busy=full)
    assert again.actions == () and again.requeue_after == pytest.approx(mark.next_try_at - NOW)
    assert waits <= mark.next_try_at - NOW


def test_no_free_port_escalates_at_alert_after():
    a = spec("a", port="auto")
    err = ServerState("a", P.ERROR, failures=4, next_try_at=NOW - 1, cause=Reason.NO_FREE_PORT)
    (mark,) = run_plan([a], [err], busy=frozenset(range(20000, 20011))).actions
    assert isinstance(mark, Mark) and mark.failures == 5 and mark.escalate


def test_steady_state_does_nothing():
    s = spec()
    assert run_plan([s], [running(s)]).actions == ()


@pytest.mark.parametrize(
    "change, restarts",
    [
        ({"port": 9090}, True),
        ({"command": ["python", "app.py"]}, True),
        ({"env": {"A": "1"}}, True),
        ({"cwd": "sub"}, True),
        ({"description": "new words"}, False),
        ({"tags": ["x"]}, False),
        ({"group": "g"}, False),
        ({"health": {"type": "http", "path": "/h"}}, False),
    ],
)
def test_only_runtime_fields_restart(change: dict[str, object], restarts: bool):
    old = spec()
    new = spec(**change)
    p = run_plan([new], [running(old)])
    if restarts:
        assert p.actions == (Stop("web", Reason.CHANGE, "TERM", 10.0),)
    else:
        assert p.actions == ()


@pytest.mark.parametrize(
    "specs, stopped, reason",
    [([], frozenset(), Reason.DELETE), ([spec(enabled=False)], frozenset(), Reason.DISABLE),
     ([spec()], frozenset({"web"}), Reason.OPERATOR_STOP)],
)
def test_running_server_that_should_not_run_is_stopped(specs, stopped, reason):
    s = spec(stop={"signal": "INT", "timeout": "3s"})
    p = run_plan(specs, [running(s)], stopped=stopped)
    assert len(p.actions) == 1 and isinstance(p.actions[0], Stop)
    assert p.actions[0].reason == reason


def test_deleted_and_stopped_server_is_forgotten():
    assert run_plan([], [ServerState("web", P.STOPPED)]).actions == (Forget("web"),)


def test_stopping_server_is_left_alone():
    s = spec()
    assert run_plan([], [running(s, phase=P.STOPPING)]).actions == ()


def test_a_kill_asked_during_a_graceful_stop_is_a_kill_action():
    s = spec()
    p = run_plan([s], [running(s, phase=P.STOPPING, kill_requested=True)], stopped={"web"})
    assert p.actions == (Kill("web"),) and p.actions[0].reason is Reason.OPERATOR_KILL
    # a kill asked while it runs is the stop itself: a Stop with KILL, no wait
    p = run_plan([s], [running(s, kill_requested=True)], stopped={"web"})
    assert p.actions == (Stop("web", Reason.OPERATOR_KILL, "KILL", 0.0),)


def test_first_crash_after_a_stable_run_restarts_at_once():
    s = spec()
    st_ = running(s, phase=P.EXITED, pid=None, exited_at=NOW, healthy_since=NOW - 120, failures=3)
    p = run_plan([s], [st_])
    assert p.actions == (Start("web", s, 8080, Reason.CRASH, failures=1),)


def test_repeated_crashes_back_off_and_requeue():
    s = spec()
    st_ = running(s, phase=P.EXITED, pid=None, exited_at=NOW, healthy_since=NOW - 2, failures=2)
    p = run_plan([s], [st_])
    (mark,) = p.actions
    assert isinstance(mark, Mark) and mark.to is P.BACKOFF and mark.failures == 3
    assert mark.next_try_at == NOW + 2.0  # start 1s, doubled once
    # while waiting: nothing, but wake up at the right time
    waiting = dataclasses.replace(st_, phase=P.BACKOFF, next_try_at=NOW + 2.0, failures=3)
    p2 = run_plan([s], [waiting], now=NOW + 0.5)
    assert p2.actions == () and p2.requeue_after == pytest.approx(1.5)
    p3 = run_plan([s], [waiting], now=NOW + 2.0)
    assert p3.actions == (Start("web", s, 8080, Reason.RETRY),)


@pytest.mark.parametrize("policy, exit_ok, restarts", [
    ("never", False, False), ("never", True, False), ("on-failure", True, False), ("on-failure", False, True),
    ("always", True, True),
])
def test_restart_policy(policy: str, exit_ok: bool, restarts: bool):
    s = spec(restart={"policy": policy})
    st_ = running(s, phase=P.EXITED, pid=None, exited_at=NOW, exit_ok=exit_ok)
    (action,) = run_plan([s], [st_]).actions
    assert isinstance(action, Start) == restarts
    if not restarts:
        assert action == Mark("web", P.STOPPED, Reason.NO_RESTART, f"policy {policy}", failures=1)


def test_starting_becomes_running_once_healthy():
    s = spec()
    st_ = running(s, phase=P.STARTING, healthy_since=NOW)
    assert run_plan([s], [st_]).actions == (Mark("web", P.RUNNING, Reason.HEALTHY),)
    # a version that answers for the first time is remembered (a rollback target on probation),
    # before the Mark: the loop replans what follows an action that changed the phase
    assert run_plan([s], [st_], good=[], answered=[]).actions == (
        Answered("web", s), Mark("web", P.RUNNING, Reason.HEALTHY))


def test_never_healthy_within_start_period_is_a_failure():
    s = spec(health={"type": "tcp", "start_period": "5s"})
    st_ = running(s, phase=P.STARTING, healthy_since=None, started_at=NOW - 5, health_error="connection refused")
    (stop,) = run_plan([s], [st_]).actions
    assert isinstance(stop, Stop) and stop.reason is Reason.START_TIMEOUT and stop.then is P.EXITED
    assert stop.detail == "not healthy 5.0s after start: connection refused"
    early = run_plan([s], [dataclasses.replace(st_, started_at=NOW - 1)])
    assert early.actions == () and early.requeue_after == pytest.approx(4.0)


def test_unhealthy_running_server_is_restarted_through_backoff():
    s = spec(health={"type": "http", "failures": 3})
    assert run_plan([s], [running(s, health_failures=2)]).actions == ()
    (stop,) = run_plan([s], [running(s, health_failures=3, health_error="HTTP 503")]).actions
    assert isinstance(stop, Stop) and stop.reason is Reason.UNHEALTHY and stop.then is P.EXITED


def test_operator_restart_and_start_after_operator_stop():
    s = spec()
    (stop,) = run_plan([s], [running(s, restart_requested=True)]).actions
    assert stop == Stop("web", Reason.OPERATOR_RESTART, "TERM", 10.0)
    # the typed cause decides, not the text (which carries a detail: "stopped by operator: ...")
    stopped = ServerState("web", P.STOPPED, reason=f"{Reason.OPERATOR_STOP}: killed by signal 15 (SIGTERM)",
                          cause=Reason.OPERATOR_STOP)
    assert run_plan([s], [stopped]).actions == (Start("web", s, 8080, Reason.OPERATOR_START),)


def test_dependencies_order_starts():
    db, app = spec("db", port=5000), spec("app", port=5001, depends_on=["db"])
    p = run_plan([db, app], [])
    assert [a.name for a in p.actions] == ["db"] and p.waiting == {"app": "waiting for db to be running"}
    p2 = run_plan([db, app], [running(db, port=5000)])
    assert [a.name for a in p2.actions] == ["app"]


def test_backoff_numbers():
    b = Backoff(start=1, cap=10, reset=60)
    assert [b.delay(n) for n in range(1, 8)] == [0, 1, 2, 4, 8, 10, 10]
    assert b.failures_after_exit(4, healthy_since=0, ended_at=60) == 1
    assert b.failures_after_exit(4, healthy_since=0, ended_at=59) == 5
    assert b.failures_after_exit(4, healthy_since=None, ended_at=1000) == 5


# --- properties ---------------------------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "d"])
phases = st.sampled_from(list(Phase))


@st.composite
def situations(draw):
    specs = {}
    for n in draw(st.sets(names)):
        specs[n] = spec(n, port=draw(st.sampled_from([None, "auto", 7000 + ord(n)])),
                        enabled=draw(st.booleans()),
                        restart={"policy": draw(st.sampled_from(["always", "on-failure", "never"]))})
    states = {}
    for n in draw(st.sets(names)):
        s = specs.get(n) or spec(n)
        states[n] = ServerState(
            n, draw(phases), pid=1, port=7000, spec_hash=draw(st.sampled_from([s.runtime_hash(), "old"])),
            started_at=NOW - draw(st.floats(0, 100)), healthy_since=draw(st.sampled_from([None, NOW - 50])),
            exited_at=NOW - 1, failures=draw(st.integers(0, 6)), next_try_at=draw(st.sampled_from([None, NOW + 3])),
            health_failures=draw(st.integers(0, 4)),
        )
    stopped = frozenset(draw(st.sets(names)))
    good = {n: s for n, s in specs.items() if draw(st.booleans())}
    good.update({n: spec(n, command=["python", "old.py"]) for n in draw(st.sets(names)) if n not in good})
    failed = {n: s.runtime_hash() for n, s in specs.items() if draw(st.booleans())}
    return Desired(specs, stopped, (20000, 20100), last_good=good, failed=failed), Observed(states)


@settings(max_examples=300, deadline=None)
@given(situations())
def test_plan_is_deterministic_and_transitions_are_legal(situation):
    desired, observed = situation
    first, second = plan(desired, observed, NOW), plan(desired, observed, NOW)
    assert first == second
    for action in first.actions:
        state = observed.servers.get(action.name, ServerState(action.name))
        target = {Start: P.STARTING, Stop: P.STOPPING}.get(type(action)) or getattr(action, "to", None)
        if target is not None:
            state.advance(target, "check")  # raises IllegalTransition if the planner asked for one
        mine = [type(a) for a in first.actions if a.name == action.name]
        # one action per server per pass (a rollback: two; a first answer: remembered, then marked)
        assert len(mine) == 1 or mine in ([RollBack, Start], [Answered, Mark])


def _apply(desired: Desired, observed: Observed, actions) -> tuple[Desired, Observed]:
    """What a perfect world does with the actions at once: starts succeed and pass their health
    check, stops complete, promotions and rollbacks are remembered."""
    servers = dict(observed.servers)
    for a in actions:
        if isinstance(a, Promote):
            desired = dataclasses.replace(desired, last_good={**desired.last_good, a.name: a.spec})
        elif isinstance(a, Answered):
            desired = dataclasses.replace(desired, answered={**desired.answered, a.name: a.spec})
        elif isinstance(a, RollBack):
            desired = dataclasses.replace(desired, failed={**desired.failed, a.name: a.failed_hash})
        elif isinstance(a, Replace):  # the new version answered and took over
            servers[a.name] = servers[a.name].update(spec_hash=a.spec.runtime_hash(), port=a.port, healthy_since=NOW)
            observed = Observed(servers, {**observed.ports, a.name: a.port}, observed.busy_ports)
        old = servers.get(a.name, ServerState(a.name))
        if isinstance(a, Start):
            servers[a.name] = old.advance(P.STARTING, a.reason, spec_hash=a.spec.runtime_hash(), port=a.port,
                                          started_at=NOW, healthy_since=NOW, health_failures=0,
                                          restart_requested=False, next_try_at=None)
        elif isinstance(a, Stop):
            servers[a.name] = old.advance(P.STOPPING, a.reason).advance(a.then, a.reason, exited_at=NOW,
                                                                        healthy_since=None, kill_requested=False)
        elif isinstance(a, Kill):
            servers[a.name] = old.update(kill_requested=False)
        elif isinstance(a, Mark):
            servers[a.name] = old.advance(a.to, a.reason, next_try_at=a.next_try_at)
        elif isinstance(a, Forget):
            servers.pop(a.name)
    return desired, Observed(servers, observed.ports, observed.busy_ports)


@settings(max_examples=300, deadline=None)
@given(situations())
def test_plan_converges_when_actions_succeed(situation):
    desired, observed = situation
    for _ in range(6):
        p = plan(desired, observed, NOW)
        if not p.actions:
            break
        desired, observed = _apply(desired, observed, p.actions)
    else:
        pytest.fail(f"no fixed point: still planning {p.actions}")
    for name, s in desired.specs.items():
        state = observed.servers.get(name)
        wanted = s.enabled and name not in desired.stopped_by_operator
        if wanted and state is not None and state.phase is P.RUNNING:  # the version in force runs
            assert state.spec_hash == in_force(name, desired).runtime_hash()
        if not wanted:
            assert state is None or state.phase not in (P.STARTING, P.RUNNING)
    assert set(observed.servers) <= set(desired.specs) | {
        n for n, s in observed.servers.items() if s.phase is not P.STOPPED}


def test_a_group_stop_takes_dependents_first():
    db, app = spec("db"), spec("app", port=8081, depends_on=["db"])
    states = [running(db), running(app)]
    both = run_plan([db, app], states, stopped=frozenset({"db", "app"}))
    assert [(a.name, type(a).__name__) for a in both.actions] == [("app", "Stop")]
    assert both.waiting == {"db": "waiting for app to stop first"}
    # only the dependency is stopped: it goes at once, the dependent is not held back by it
    alone = run_plan([db, app], states, stopped=frozenset({"db"}))
    assert [(a.name, type(a).__name__) for a in alone.actions] == [("db", "Stop")]


@pytest.mark.parametrize("cause, then", [
    (Reason.OPERATOR_STOP, Reason.OPERATOR_START), (Reason.OPERATOR_KILL, Reason.OPERATOR_START),
    (Reason.OPERATOR_RESTART, Reason.OPERATOR_RESTART), (Reason.CHANGE, Reason.CHANGE),
    (Reason.DISABLE, Reason.CHANGE), (None, Reason.CREATE),
])
def test_a_start_after_a_stop_is_explained_by_the_typed_cause(cause: Reason | None, then: Reason):
    s = spec()
    stopped = ServerState("web", P.STOPPED, reason=f"{cause}: exited with code 0", cause=cause)
    (start,) = run_plan([s], [stopped]).actions
    assert isinstance(start, Start) and start.reason is then


@pytest.mark.parametrize("healthy_for, failures_after", [(60.0, 0), (120.0, 0), (59.0, None)])
def test_a_stable_run_ended_by_a_restart_clears_the_failure_count(healthy_for: float, failures_after: int | None):
    # two crashes, then healthy past backoff_reset, then `gateway restart`: the next crash is
    # failure 1 again (it was "failure 3 in a row" and a false "down" alert)
    s = spec()
    st = running(s, failures=2, healthy_since=NOW - healthy_for, restart_requested=True)
    (stop,) = run_plan([s], [st]).actions
    assert stop == Stop("web", Reason.OPERATOR_RESTART, "TERM", 10.0, failures=failures_after)


# --- health-gated changes (reconciler/core/rollout.py) ---------------------------------------------
GOOD = spec("web", command=["python", "good.py", "{port}"])
CHANGED = spec("web", command=["pyton", "good.py", "{port}"])


def on_probation(s: ServerSpec, healthy_for: float, **kw: object) -> ServerState:
    return running(s, healthy_since=NOW - healthy_for, started_at=NOW - healthy_for - 1, **kw)


def test_a_change_on_probation_waits_then_becomes_the_last_good_version():
    p = run_plan([CHANGED], [on_probation(CHANGED, 10.0)], good=[GOOD])
    assert p.actions == () and p.requeue_after == pytest.approx(20.0)
    assert run_plan([CHANGED], [on_probation(CHANGED, 30.0)], good=[GOOD]).actions == (
        Promote("web", CHANGED, changed=True),)


def test_a_brand_new_server_becomes_good_after_its_probation_too():
    assert run_plan([GOOD], [on_probation(GOOD, 31.0)], good=[]).actions == (Promote("web", GOOD),)


@pytest.mark.parametrize("phase", [P.EXITED, P.ERROR])
def test_a_failed_change_is_rolled_back_to_the_last_good_version(phase: Phase):
    # it exited (or could not even start: ERROR) before its probation was over
    failed = ServerState("web", phase, reason="the process exited: exited with code 2", spec_hash=CHANGED.runtime_hash(),
                         exited_at=NOW - 0.1, failures=1, next_try_at=NOW + 5, cause=Reason.CRASH)
    back, start = run_plan([CHANGED], [failed], good=[GOOD]).actions
    assert back == RollBack("web", CHANGED.runtime_hash(), "the process exited: exited with code 2",
                            facts={"cause": str(Reason.CRASH)})
    assert isinstance(start, Start) and start.reason is Reason.ROLLBACK and start.failures == 0
    assert start.spec.command == GOOD.command and start.spec.runtime_hash() == GOOD.runtime_hash()


def test_a_crash_of_the_good_version_or_of_a_new_server_is_no_rollback():
    crashed = ServerState("web", P.EXITED, spec_hash=GOOD.runtime_hash(), exited_at=NOW - 0.1, cause=Reason.CRASH)
    (start,) = run_plan([GOOD], [crashed], good=[GOOD]).actions
    assert isinstance(start, Start) and start.reason is Reason.CRASH
    fresh = ServerState("web", P.EXITED, spec_hash=CHANGED.runtime_hash(), exited_at=NOW - 0.1, failures=1,
                        cause=Reason.CRASH)
    (mark,) = run_plan([CHANGED], [fresh], good=[]).actions
    assert isinstance(mark, Mark) and mark.to is P.BACKOFF  # a brand-new server: backoff as before


def test_the_rolled_back_version_is_not_tried_again_until_the_file_changes_or_retry():
    steady = on_probation(GOOD, 100.0)
    failed = {"web": CHANGED.runtime_hash()}
    assert run_plan([CHANGED], [steady], good=[GOOD], failed=failed).actions == ()
    # a new edit of the file is a new version: tried
    fixed = spec("web", command=["python", "fixed.py", "{port}"])
    (stop,) = run_plan([fixed], [steady], good=[GOOD], failed=failed).actions
    assert isinstance(stop, Stop) and stop.reason is Reason.CHANGE
    # Retry forgets the failure: the same version is tried again
    (retry,) = run_plan([CHANGED], [steady], good=[GOOD], failed={}).actions
    assert isinstance(retry, Stop) and retry.reason is Reason.CHANGE


def test_the_version_in_force_keeps_the_files_other_settings():
    edited = spec("web", command=["pyton", "good.py", "{port}"], description="new words", stop={"timeout": "3s"})
    desired = Desired({"web": edited}, last_good={"web": GOOD}, failed={"web": edited.runtime_hash()})
    used = in_force("web", desired)
    assert used is not None and used.command == GOOD.command and used.description == "new words"
    assert used.stop.timeout == 3.0 and used.runtime_hash() == GOOD.runtime_hash()


def test_a_deleted_files_server_stops_with_the_settings_it_last_had():
    last = spec("web", stop={"signal": "INT", "timeout": "2s"})
    (stop,) = run_plan([], [running(last)], known=[last]).actions
    assert stop == Stop("web", Reason.DELETE, "INT", 2.0)


def test_a_change_with_an_automatic_port_starts_next_to_the_running_version():
    old = spec("web", port="auto", command=["python", "v1.py", "{port}"])
    new = spec("web", port="auto", command=["python", "v2.py", "{port}"])
    st = running(old, port=20003)
    (rep,) = run_plan([new], [st], ports={"web": 20003}, good=[old]).actions
    assert isinstance(rep, Replace) and rep.spec == new and rep.port not in (20003, None)
    # while it comes up, nothing else is planned for the server
    assert run_plan([new], [dataclasses.replace(st, replacing=True)], ports={"web": 20003}, good=[old]).actions == ()
    # not the last good version running (a change on probation): stop, then start
    (stop,) = run_plan([new], [st], ports={"web": 20003}, good=[]).actions
    assert isinstance(stop, Stop) and stop.reason is Reason.CHANGE
    # a fixed port cannot run twice: stop, then start
    fixed = spec("web", port=8080, command=["python", "v2.py", "{port}"])
    (stop,) = run_plan([fixed], [st], good=[old]).actions
    assert isinstance(stop, Stop)


def test_a_server_that_needs_the_internet_waits_for_it_instead_of_failing():
    s = spec("cloudflared", port=20241, health={"type": "http", "path": "/ready", "needs_internet": True})
    exited = ServerState("cloudflared", P.EXITED, spec_hash=s.runtime_hash(), exited_at=NOW, failures=4,
                         cause=Reason.CRASH)
    desired = Desired({"cloudflared": s}, last_good={"cloudflared": s}, offline=True)
    (mark,) = plan(desired, Observed({"cloudflared": exited}), NOW).actions
    assert mark == Mark("cloudflared", P.BACKOFF, Reason.WAITING_FOR_INTERNET, "retried as soon as the internet is back",
                        next_try_at=NOW)
    assert not mark.escalate and mark.failures is None  # not counted
    waiting = exited.advance(P.BACKOFF, "waiting", cause=Reason.WAITING_FOR_INTERNET, next_try_at=NOW)
    held = plan(desired, Observed({"cloudflared": waiting}), NOW)
    assert held.actions == () and held.requeue_after is None
    back = plan(dataclasses.replace(desired, offline=False), Observed({"cloudflared": waiting}), NOW)
    (start,) = back.actions
    assert isinstance(start, Start) and start.reason is Reason.RETRY
    # a server that does not need the internet fails as usual while it is down
    plain = spec("web")
    crashed = ServerState("web", P.EXITED, spec_hash=plain.runtime_hash(), exited_at=NOW, failures=1, cause=Reason.CRASH)
    (mark,) = plan(Desired({"web": plain}, last_good={"web": plain}, offline=True), Observed({"web": crashed}), NOW).actions
    assert isinstance(mark, Mark) and mark.reason is Reason.CRASH


def test_servers_healthy_within_a_few_seconds_are_promoted_in_one_pass():
    """Probations end on a 5 s beat: 100 servers started together were 100 passes over 100
    servers 30 s after a start (most of the gateway's CPU in that minute); now one or two."""
    names = ("a", "b", "c")
    specs = [spec(n) for n in names]
    states = [running(s, healthy_since=NOW + d - 30.0, started_at=NOW + d - 31.0)
              for s, d in zip(specs, (0.1, 0.7, 3.9))]  # their probations end at NOW+0.1 .. NOW+3.9
    early = run_plan(specs, states, good=[], now=NOW + 3.95)
    assert early.actions == () and early.requeue_after == pytest.approx(1.05)  # at NOW+5, the beat
    assert run_plan(specs, states, good=[], now=NOW + 5.0).actions == tuple(Promote(n, s) for n, s in zip(names, specs))


# --- a fix saved, a rollback target on probation, what a run keeps (issue 23) ---------------
def test_a_new_version_of_the_file_ends_the_backoff_and_starts_at_once():
    # crash-looping, next try in 3 min 46 s: the owner saves a fix -> started now, count reset
    broken = spec("bot", command=["python", "bot.py"], port=None)
    fixed = spec("bot", command=["python", "bot.py", "--token", "x"], port=None)
    waiting = ServerState("bot", P.BACKOFF, spec_hash=broken.runtime_hash(), failures=9, next_try_at=NOW + 226,
                          cause=Reason.CRASH)
    assert run_plan([broken], [waiting], good=[]).actions == ()  # the same version: the backoff holds
    assert run_plan([fixed], [waiting], good=[]).actions == (Start("bot", fixed, None, Reason.CHANGE, failures=0),)
    held = dataclasses.replace(waiting, phase=P.ERROR)  # could not start (port held): the same
    assert run_plan([fixed], [held], good=[]).actions == (Start("bot", fixed, None, Reason.CHANGE, failures=0),)
    ended = dataclasses.replace(waiting, phase=P.EXITED, next_try_at=None, exited_at=NOW)
    assert run_plan([fixed], [ended], good=[]).actions == (Start("bot", fixed, None, Reason.CHANGE, failures=0),)


def test_a_version_that_answered_is_a_rollback_target_while_on_probation():
    # a new server answered for 5 s (no good version yet), then a command that crashes is saved
    crashing = ServerState("web", P.EXITED, spec_hash=CHANGED.runtime_hash(), exited_at=NOW, failures=0,
                           cause=Reason.CRASH)
    back, start = run_plan([CHANGED], [crashing], good=[], answered=[GOOD]).actions
    assert isinstance(back, RollBack) and back.failed_hash == CHANGED.runtime_hash()
    assert isinstance(start, Start) and start.spec.command == GOOD.command and start.reason is Reason.ROLLBACK
    # after a good edit (EDITED answered, still on probation; GOOD is the last good one), a broken
    # file goes back to EDITED, the version that was running, not to the older GOOD
    edited = spec("web", command=["python", "edited.py", "{port}"])
    back, start = run_plan([CHANGED], [crashing], good=[GOOD], answered=[edited]).actions
    assert isinstance(start, Start) and start.spec.command == edited.command
    # the answered version itself failing on its probation goes back to the last good one
    own = dataclasses.replace(crashing, spec_hash=edited.runtime_hash())
    back, start = run_plan([edited], [own], good=[GOOD], answered=[edited]).actions
    assert isinstance(start, Start) and start.spec.command == GOOD.command
    # the one that never answered, with nothing before it: backoff, no rollback
    (mark,) = run_plan([edited], [dataclasses.replace(own, failures=1)], good=[], answered=[edited]).actions
    assert isinstance(mark, Mark) and mark.to is P.BACKOFF


def test_not_answering_stays_the_cause_through_backoff_and_restart():
    s = spec(health={"type": "http"})
    stopped = ServerState("web", P.EXITED, spec_hash=s.runtime_hash(), exited_at=NOW, failures=0,
                          cause=Reason.UNHEALTHY)
    (start,) = run_plan([s], [stopped]).actions  # the first failure: at once
    assert isinstance(start, Start) and start.reason is Reason.UNHEALTHY
    (mark,) = run_plan([s], [dataclasses.replace(stopped, failures=2, cause=Reason.START_TIMEOUT)]).actions
    assert isinstance(mark, Mark) and mark.to is P.BACKOFF and mark.reason is Reason.START_TIMEOUT
    assert mark.detail == "failure 3 in a row"  # no countdown baked into words: next_try_at is the fact


def test_set_not_to_restart_stays_stopped_until_its_file_changes():
    s = spec(restart={"policy": "never"})
    ended = ServerState("web", P.STOPPED, spec_hash=s.runtime_hash(), cause=Reason.NO_RESTART)
    assert run_plan([s], [ended]).actions == ()  # it was started again as a "new server"
    changed = spec(restart={"policy": "never"}, command=["python", "other.py"])
    assert run_plan([changed], [ended]).actions == (Start("web", changed, 8080, Reason.CHANGE),)
    owner = dataclasses.replace(ended, cause=Reason.OPERATOR_START)  # the owner's Start (loop.control)
    assert run_plan([s], [owner]).actions == (Start("web", s, 8080, Reason.OPERATOR_START),)


def test_a_restart_by_the_gateway_itself_is_not_the_owners():
    s = spec()
    (stop,) = run_plan([s], [running(s, restart_requested=True, restart_by_owner=False)]).actions
    assert stop.reason is Reason.WOKE_UP
    after = ServerState("web", P.STOPPED, cause=Reason.WOKE_UP)
    assert run_plan([s], [after]).actions == (Start("web", s, 8080, Reason.WOKE_UP),)
    booted = ServerState("web", P.STOPPED, cause=Reason.SHUTDOWN)  # stopped with the previous gateway
    assert run_plan([s], [booted]).actions == (Start("web", s, 8080, Reason.BOOT),)


def test_the_runtime_hash_is_made_once_and_a_copy_has_its_own() -> None:
    """The digest is kept per spec (asked for every server at every pass, issue 27): an equal spec
    stays equal whether or not it was asked, and a copy with a runtime field changed (the
    roll-back's copy, reconciler/core/rollout.py) has the digest of what it holds."""
    a, b = spec(), spec()
    digest = a.runtime_hash()
    assert a == b and b == a and a.runtime_hash() is digest
    moved = a.model_copy(update={"port": 9090})
    assert moved.runtime_hash() == spec(port=9090).runtime_hash() != digest
    assert a.model_copy(update={"description": "same process"}).runtime_hash() == digest
    assert a.effective_health() is b.effective_health()  # the default check is one frozen model
