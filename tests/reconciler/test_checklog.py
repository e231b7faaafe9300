"""Health results as change rows and minutes (reconciler/engine/checklog.py): pure, no database. What a
minute says must be what the rows of every check said (availability and the chart read it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.engine.checklog import CheckLog

T0 = datetime(2026, 12, 6, 15, 0, tzinfo=UTC)


def log_of() -> tuple[CheckLog, list[dict[str, Any]]]:
    ops: list[dict[str, Any]] = []
    return CheckLog(ops.append, run="r"), ops


def test_a_row_only_when_the_result_changes() -> None:
    log, ops = log_of()
    results = [(True, 3.0, None), (True, None, None), (False, None, "refused"), (False, None, "refused"),
               (False, None, "HTTP 500"), (True, 2.0, None), (True, 2.5, None)]
    for i, (ok, latency, error) in enumerate(results):
        log.check("web", ok, latency, error, T0 + timedelta(seconds=5 * i))
    changes = [(op["ok"], op["error"]) for op in ops if op["op"] == "health"]
    # the first result of the run, up -> down, another error while down, down -> up
    assert changes == [(True, None), (False, "refused"), (False, "HTTP 500"), (True, None)]
    assert not [op for op in ops if op["op"] == "health_minute"]  # the minute is not over yet


def test_a_minute_is_written_once_it_is_over_for_every_server_together() -> None:
    log, ops = log_of()
    log.check("a", True, 2.0, None, T0 + timedelta(seconds=1))
    log.check("a", True, 4.0, None, T0 + timedelta(seconds=11))
    log.check("a", False, None, "refused", T0 + timedelta(seconds=21))
    log.check("b", True, None, None, T0 + timedelta(seconds=30))
    log.check("a", True, 6.0, None, T0 + timedelta(seconds=61))  # the next minute: both minutes go now
    minutes = {op["server"]: op for op in ops if op["op"] == "health_minute"}
    assert set(minutes) == {"a", "b"}
    a = minutes["a"]
    assert (a["checks"], a["failures"], a["timed"], a["latency_min"], a["latency_avg"], a["latency_max"]) == (
        3, 1, 2, 2.0, 3.0, 4.0)
    assert a["minute"] == T0.isoformat() and a["last_at"] == (T0 + timedelta(seconds=21)).isoformat()
    assert a["run"] == "r"
    assert (minutes["b"]["checks"], minutes["b"]["timed"], minutes["b"]["latency_avg"]) == (1, 0, None)
    assert log.flush(T0 + timedelta(seconds=100)) == 0  # a's second minute is not over
    assert log.flush(T0 + timedelta(seconds=120)) == 1
    assert log.flush(T0 + timedelta(seconds=121), everything=True) == 0


def test_a_clean_stop_writes_the_minute_under_way() -> None:
    log, ops = log_of()
    log.check("a", True, 1.0, None, T0 + timedelta(seconds=5))
    assert log.flush(T0 + timedelta(seconds=6), everything=True) == 1
    assert [op["checks"] for op in ops if op["op"] == "health_minute"] == [1]


RESULT = st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(),
                   st.one_of(st.none(), st.floats(0.1, 500, allow_nan=False)),
                   st.sampled_from(["refused", "timed out"]), st.floats(0.0, 40.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(RESULT, max_size=60))
def test_minutes_count_what_rows_of_every_check_counted(results: list[tuple[str, bool, float | None, str, float]]) -> None:
    """Property: over any run of results, the minutes hold every check and failure (the figure
    availability is made of), their response times' min / average / max per minute, and the
    change rows are exactly the results that differ from the server's previous one."""
    log, ops = log_of()
    at, rows, last, changes = T0, [], {}, []
    for server, ok, latency, error, step in results:
        at += timedelta(seconds=step)
        error_or_none = None if ok else error
        log.check(server, ok, latency, error_or_none, at)
        rows.append((server, at.replace(second=0, microsecond=0), ok, latency))
        if last.get(server) != (ok, error_or_none):
            changes.append((server, ok, error_or_none))
        last[server] = (ok, error_or_none)
    log.flush(at, everything=True)
    minutes = [op for op in ops if op["op"] == "health_minute"]
    assert sum(m["checks"] for m in minutes) == len(rows)
    assert sum(m["failures"] for m in minutes) == sum(1 for r in rows if not r[2])
    assert len({(m["server"], m["minute"]) for m in minutes}) == len(minutes)  # one row per server per minute
    for m in minutes:
        mine = [r[3] for r in rows if r[0] == m["server"] and r[1].isoformat() == m["minute"] and r[3] is not None]
        assert m["timed"] == len(mine)
        assert m["latency_min"] == min(mine, default=None) and m["latency_max"] == max(mine, default=None)
        if mine:
            assert abs(m["latency_avg"] - sum(mine) / len(mine)) < 1e-3
    assert [(op["server"], op["ok"], op["error"]) for op in ops if op["op"] == "health"] == changes
