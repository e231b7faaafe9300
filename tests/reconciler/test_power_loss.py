"""A power cut, as near as a test can get: the gateway, every server and the embedded PostgreSQL
are SIGKILLed (Windows: TerminateProcess) at once. The next `gateway run` recovers the database, keeps every event recorded
before the cut, starts every server again and says it recovered after an unclean stop."""

from __future__ import annotations

import contextlib
import time

import psutil

from reconciler.store.embedded import EmbeddedPostgres
from tests.fix_children import gone
from tests.fix_gateway import Gateway
from tests.reconciler.test_instance import HTTP

NAMES = ("a", "b", "c")


def cut_power(gw: Gateway) -> list[int]:
    """SIGKILL the gateway, its servers' trees and the whole PostgreSQL cluster in one sweep."""
    assert gw.proc is not None
    pg = EmbeddedPostgres(gw.data_dir)
    postmaster = psutil.Process(pg.pid or 0)
    victims = [psutil.Process(gw.proc.pid), *psutil.Process(gw.proc.pid).children(recursive=True),
               postmaster, *postmaster.children(recursive=True)]
    gw.remember_pids()
    for proc in victims:  # no waiting in between: nobody gets to clean up
        with contextlib.suppress(psutil.NoSuchProcess):  # a worker that ended by itself meanwhile
            proc.kill()  # SIGKILL; TerminateProcess on Windows
    gw.proc.wait(10)
    gw.proc = None
    deadline = time.monotonic() + 10
    while not all(gone(p.pid) for p in victims):
        assert time.monotonic() < deadline, [p.pid for p in victims if not gone(p.pid)]
        time.sleep(0.02)
    return [p.pid for p in victims]


def test_after_a_power_cut_the_next_run_recovers_everything(own_db_gateway: Gateway) -> None:
    gw = own_db_gateway
    for name in NAMES:
        gw.write(name, HTTP)
    gw.start()
    before = gw.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in NAMES))
    recorded = {(e["seq"], e["kind"], e["server"]) for e in gw.events()}  # flushed: all in PostgreSQL
    assert len(recorded) >= 7
    killed = cut_power(gw)
    assert all(gone(s["pid"]) for s in before.values()) and (gw.data_dir / "postgres" / "postmaster.pid").exists()

    gw.start()
    after = gw.wait_for(lambda s: all(s.get(n, {}).get("phase") == "running" for n in NAMES), 30)
    assert all(after[n]["pid"] != before[n]["pid"] for n in NAMES)  # started again: the old ones died
    events = gw.events()
    assert recorded <= {(e["seq"], e["kind"], e["server"]) for e in events}  # nothing lost in the cut
    recovered = [e for e in events if e["kind"] == "gateway_recovered"]
    assert len(recovered) == 1 and "recovered after an unclean stop" in recovered[0]["reason"]
    assert {e["server"] for e in events if e["kind"] == "not_adopted"} == set(NAMES)
    assert "recovered after an unclean stop" in gw.output.read_text()
    assert EmbeddedPostgres(gw.data_dir).pid not in killed
    assert "automatic recovery in progress" in (gw.data_dir / "postgres.log").read_text()  # PostgreSQL's own
