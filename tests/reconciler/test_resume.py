"""Sleep and freezes: the gap found on two clocks, what a resume resets, the quiet window for
alerts, and a real freeze (SIGSTOP of the gateway and its server, then SIGCONT): no restart, no
alert, one `host_resumed` event, no failed check charged to availability. On Windows, which has no
SIGSTOP, the same freeze is a suspension of every thread (psutil: NtSuspendProcess), as a debugger
does; both clocks go on, as through SIGSTOP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg

from reconciler.core.state import Phase
from reconciler.engine.resume import BEAT, JUMP, Gap, ResumeWatch, gap
from reconciler.engine.runtime import Runtime
from reconciler.ops.notify import Classifier
from tests.fix_gateway import Gateway
from tests.ops.test_notify import Receiver, receiver  # noqa: F401 - the fixture

# A freeze well past the detection threshold (BEAT + JUMP, 10 s) and spanning six 2 s health intervals,
# more than `failures x interval`: if missed checks were charged, or the first checks after the
# freeze counted, the server would be restarted. 30 s (the figure) is the bench's default.
FREEZE = 12.0


def test_gap_on_two_clocks() -> None:
    assert gap(5.0, 5.02, 5.02) is None  # a timer a little late: a busy loop, not a freeze
    assert gap(5.0, 5.0 + JUMP - 0.1, 5.0 + JUMP - 0.1) is None
    assert gap(5.0, 35.0, 35.0) == Gap(30.0, slept=False)  # frozen (SIGSTOP), or Windows' sleep
    assert gap(5.0, 5.0, 65.0) == Gap(60.0, slept=True)  # Linux/macOS suspend: monotonic stood still
    assert "slept for 60 s" in Gap(60.0, True).describe()
    assert "2.0 h" in Gap(7200.0, False).describe()


async def test_a_resume_resets_failure_counts_and_opens_a_settling_window(tmp_path: Path) -> None:
    recorded: list[dict[str, Any]] = []
    rt = Runtime(tmp_path, tmp_path, recorded.append)
    rt.states["web"] = rt.state("web").advance(Phase.RUNNING, "test").update(health_failures=2, health_error="x")
    assert not rt.resume.settling()
    ResumeWatch(rt, settle=20.0).resumed(Gap(30.0, False))
    assert rt.state("web").health_failures == 0 and rt.state("web").health_error is None
    assert rt.resume.settling() and not rt.resume.settling(time.monotonic() + 21)
    [event] = [op for op in recorded if op.get("op") == "event"]
    assert event["kind"] == "host_resumed" and event["detail"] == {"seconds": 30.0, "slept": False, "settle": 20.0}


def test_no_down_alert_while_the_host_settles() -> None:
    classify = Classifier()
    resumed = {"op": "event", "kind": "host_resumed", "server": None, "detail": {"settle": 20.0}}
    down = {"op": "event", "kind": "escalated", "server": "web", "reason": "5 failures"}
    assert classify(resumed, 100.0) is None
    assert classify(down, 110.0) is None  # waking up: not news
    assert classify(dict(down, kind="health_failed", detail={"failures": 3}), 119.0) is None
    alert = classify(down, 121.0)  # still failing after the window: an alert
    assert alert is not None and alert.kind == "down"


def pause(pid: int, tree: bool = False) -> None:
    """Freeze `pid` (with `tree`: its process group on POSIX, itself and its descendants on Windows)."""
    if sys.platform == "win32":
        proc = psutil.Process(pid)
        for each in [proc, *proc.children(recursive=True)] if tree else [proc]:
            each.suspend()
    else:
        (os.killpg if tree else os.kill)(pid, signal.SIGSTOP)


def carry_on(pid: int, tree: bool = False) -> None:
    """Undo `pause`; ProcessLookupError when `pid` is gone."""
    if sys.platform == "win32":
        try:
            proc = psutil.Process(pid)
            for each in [proc, *proc.children(recursive=True)] if tree else [proc]:
                each.resume()
        except psutil.NoSuchProcess:
            raise ProcessLookupError(pid) from None
    else:
        (os.killpg if tree else os.kill)(pid, signal.SIGCONT)


def _samples(gw: Gateway, server: str) -> list[tuple[Any, bool]]:
    """(when, passed) of each check of `server`, as its health minutes count them (1 s long in tests)."""
    with psycopg.connect(gw.dsn, options=f"-c search_path={gw.schema}") as conn:
        minutes = conn.execute("SELECT last_at, checks, failures FROM health_minutes WHERE server = %s ORDER BY minute",
                               (server,)).fetchall()
    return [(at, i >= failures) for at, checks, failures in minutes for i in range(checks)]


def test_a_frozen_gateway_and_server_resume_without_a_restart(gateway: Gateway, receiver: Receiver) -> None:  # noqa: F811
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text(toml.read_text() + f'[notify]\nurls = ["{receiver.url}"]\ngroup = "100ms"\nmin_interval = "0s"\n')
    gateway.write("web", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                  'port = "auto"\n[health]\ntype = "http"\ninterval = "2s"\nfailures = 3\n')
    gateway.start()
    before = gateway.wait_phase("web", "running")
    assert gateway.proc is not None
    gateway.events()
    pause(before["pid"], tree=True)
    pause(gateway.proc.pid)
    try:
        time.sleep(FREEZE)
    finally:
        carry_on(before["pid"], tree=True)
        carry_on(gateway.proc.pid)
    deadline = time.monotonic() + 20
    while not (resumed := [e for e in gateway.events() if e["kind"] == "host_resumed"]):
        assert time.monotonic() < deadline, "no host_resumed event after the freeze"
        time.sleep(0.1)
    assert FREEZE - JUMP - 1 <= resumed[0]["detail"]["seconds"] <= FREEZE + 1
    # checks after the freeze: wait for three passed ones (they come every 2 s)
    after = resumed[0]["at"]
    deadline = time.monotonic() + 20
    while len([ok for at, ok in _samples(gateway, "web") if at > after]) < 3:
        assert time.monotonic() < deadline, _samples(gateway, "web")
        time.sleep(0.1)
    now = gateway.status()["web"]
    assert now["pid"] == before["pid"] and now["restarts"] == before["restarts"] and now["phase"] == "running"
    assert all(ok for _, ok in _samples(gateway, "web")), "a failed check was charged to availability"
    events = gateway.events()
    assert [e["kind"] for e in events].count("host_resumed") == 1
    assert not [e for e in events if e["at"] > after and e["server"] == "web"], "the server was touched"
    assert receiver.got == []


async def test_cloudflared_not_ready_after_a_resume_is_restarted(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, tmp_path, lambda op: None)
    rt.states["cloudflared"] = rt.state("cloudflared").advance(Phase.RUNNING, "test")
    restarted: list[str] = []
    watch = ResumeWatch(rt, restarted.append, tunnel_after=0.05)
    watch.resumed(Gap(3600.0, True))
    rt.update("cloudflared", health_failures=1, health_error="not ready: no connection to the edge")
    await asyncio.gather(*list(rt.tasks))
    assert restarted == ["cloudflared"]
    watch.resumed(Gap(3600.0, True))  # ready this time: left alone
    await asyncio.gather(*list(rt.tasks))
    assert restarted == ["cloudflared"]


async def test_a_resume_cuts_every_nap_short(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, tmp_path, lambda op: None)
    naps = [asyncio.ensure_future(rt.resume.nap(3600.0)) for _ in range(3)]
    short = asyncio.ensure_future(rt.resume.nap(0.01))
    await asyncio.wait_for(short, 5)  # a nap ends by itself too
    await asyncio.sleep(0)
    assert not any(n.done() for n in naps) and len(rt.resume.sleepers) == 3
    ResumeWatch(rt).resumed(Gap(600.0, True))
    await asyncio.wait_for(asyncio.gather(*naps), 5)
    assert rt.resume.sleepers == set()


def test_checks_failing_while_the_host_settles_are_not_counted(gateway: Gateway) -> None:
    # The gateway wakes before its server does (a disk, the network waking up): its checks fail for
    # longer than `failures x interval` inside the settling window: not counted, not charged, no restart.
    gateway.write("web", 'command = ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]\n'
                  'port = "auto"\n[health]\ntype = "http"\ninterval = "1s"\ntimeout = "1s"\nfailures = 3\n')
    gateway.start()
    before = gateway.wait_phase("web", "running")
    assert gateway.proc is not None
    pause(before["pid"], tree=True)
    pause(gateway.proc.pid)
    try:
        time.sleep(JUMP + BEAT + 3)  # longer than any freeze the beat can miss
        carry_on(gateway.proc.pid)  # the server stays stopped a while longer
        gateway.wait_for(lambda s: "not counted" in (s["web"].get("health_error") or ""), 20,
                         "a failed check marked as not counted")
        time.sleep(4)  # four more 1 s checks fail while the server is still stopped: more than `failures`
    finally:
        try:
            carry_on(before["pid"], tree=True)
        except ProcessLookupError:
            raise AssertionError("the server was stopped while the host settled: " + str(
                [(e["kind"], e["to_phase"], e["reason"]) for e in gateway.events()])) from None
    gateway.wait_for(lambda s: s["web"]["health"] == "ok" and not s["web"].get("health_error"), 20, "healthy again")
    now = gateway.status()["web"]
    assert now["pid"] == before["pid"] and now["restarts"] == before["restarts"]
    assert all(ok for _, ok in _samples(gateway, "web")), "a failed check just after the resume was charged"
    assert not [e for e in gateway.events() if e["kind"] == "health_failed"]


def test_a_check_finds_a_suspend_between_two_beats(tmp_path: Path) -> None:
    """The suspend clock ahead of the monotonic one since the last look is a suspend, found by
    the first check after the wake (`look`), whatever is left of the watch's beat."""
    recorded: list[dict[str, Any]] = []
    rt = Runtime(tmp_path, tmp_path, recorded.append)
    suspend = [1000.0]
    watch = ResumeWatch(rt, clock=lambda: suspend[0])
    rt.resume.watch = watch
    rt.resume.look()
    assert not rt.resume.settling() and recorded == []  # neither clock moved apart
    suspend[0] += 3.0  # less than JUMP
    rt.resume.look()
    assert not rt.resume.settling()
    suspend[0] += 40.0  # asleep: the monotonic clock stood still
    rt.resume.look()
    assert rt.resume.settling()
    [event] = [op for op in recorded if op.get("op") == "event"]
    assert event["kind"] == "host_resumed" and event["detail"]["slept"] is True
    assert 40.0 <= event["detail"]["seconds"] <= 43.5
    rt.resume.look()  # the same suspend is found once
    assert len([op for op in recorded if op.get("op") == "event"]) == 1
