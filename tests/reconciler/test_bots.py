"""A program without a web page (a bot, a worker): `[health] type = "running"`. It gets no
port; it is "starting" until it has kept running `min_uptime`, then "running"; one that dies
before never counts as running. While it runs, each sampling round is its passed check, so
its availability is not made of its failures alone. A real daemon, real children, real
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.fix_gateway import Gateway
from tests.reconciler.test_loop import wait_until
from tests.reconciler.test_supervision import transitions
from tests.fix_children import toml_str

CHILDREN = Path(__file__).resolve().parent.parent / "children"
FAST_SAMPLES = '[host]\nsample_every = "200ms"\ninternet_check = "off"\n'


def _samples(gw: Gateway, name: str) -> tuple[int, int]:
    """(passed, all) checks of `name` in PostgreSQL (its health minutes: the tests' are 1 s long)."""
    gw.client.events(limit=1)  # the API writes the gateway's queue before it reads
    with psycopg.connect(gw.read_dsn(), options=f"-c search_path={gw.schema}") as conn:
        row = conn.execute("SELECT coalesce(sum(checks - failures), 0), coalesce(sum(checks), 0) FROM health_minutes"
                           " WHERE server = %s", (name,)).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_bot_is_starting_until_it_kept_running_then_running(gateway: Gateway):
    gateway.write("bot", f'command = ["python", {toml_str(CHILDREN / "ticker.py")}, "0.5"]\n'
                         '[health]\ntype = "running"\nmin_uptime = "1500ms"\n')
    gateway.start()
    running = gateway.wait_phase("bot", "running", timeout=15)
    assert running["port"] is None and running["health"] == "ok"  # no port: nothing to answer on
    steps = [(e["to_phase"], e["at"]) for e in transitions(gateway, "bot")]
    started = next(at for phase, at in steps if phase == "starting")
    running = next(at for phase, at in steps if phase == "running")
    # it kept running its min_uptime first (the "starting" row is written a moment after the spawn)
    assert (running - started).total_seconds() >= 1.4


def test_a_bot_that_dies_before_its_min_uptime_never_counts_as_running(gateway: Gateway):
    # (min_uptime well past the interpreter's start on a loaded machine: the 0.3 s are the program's)
    gateway.write("bot", f'command = ["python", {toml_str(CHILDREN / "crash_after.py")}, "1", "0.3"]\n'
                         '[health]\ntype = "running"\nmin_uptime = "5s"\n[restart]\nbackoff_start = "1m"\n')
    gateway.start()
    gateway.wait_for(lambda s: s.get("bot", {}).get("last_exit") == "exited with code 1", what="the exit")
    phases = [e["to_phase"] for e in transitions(gateway, "bot")]
    assert phases[:2] == ["starting", "exited"], phases  # never "running" on the way


def test_a_running_bot_has_passed_checks_not_only_its_failures(gateway: Gateway):
    """A bot that ran fine for minutes showed "Up last 24 h 0.0 %": its check never runs, so only
    the rounds it was down were recorded. Now every round it runs is a passed check."""
    gateway.write("gateway", (gateway.config_dir / "gateway.toml").read_text() + FAST_SAMPLES)
    gateway.write("bot", f'command = ["python", {toml_str(CHILDREN / "ticker.py")}, "0.5"]\n'
                         '[health]\ntype = "running"\nmin_uptime = "200ms"\n')
    gateway.write("worker", f'command = ["python", {toml_str(CHILDREN / "ticker.py")}, "0.5"]\n')  # no check at all
    gateway.start()
    gateway.wait_phase("bot", "running")
    gateway.wait_phase("worker", "running")
    wait_until(lambda: min(_samples(gateway, "bot")[0], _samples(gateway, "worker")[0]) >= 3, 15,
               "passed checks of both")
    for name in ("bot", "worker"):
        passed, total = _samples(gateway, name)
        assert passed >= 3 and passed == total, (name, passed, total)
