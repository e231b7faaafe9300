"""The alert dispatcher (ops/notify.py) wired into a running daemon: each server's truth read
from the runtime, the polled conditions (disk, database), and the record of every message sent."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler.ops import Loaded, live_section
from reconciler.ops.incidents import Incident, Truth, assess
from reconciler.ops.notify import Alert, Dispatcher, NotifySettings, Record, Sent, TruthOf, parse_settings
from reconciler.store.records import record_alert

if TYPE_CHECKING:
    from reconciler.core.spec import ServerSpec
    from reconciler.engine.runtime import Runtime
    from reconciler.host.sampler import Figures
    from reconciler.store import Store
    from reconciler.store.db import Pool
    from reconciler.store.sink import Sink

DATABASE_AFTER = 30.0  # seconds unreachable before it alerts


def recorder(pool: Pool, targets: Callable[[], int]) -> Record:
    """Each message sent (or not) as a row of `alerts` (reconciler/store/records.py)."""
    async def record(sent: Sent) -> None:
        await record_alert(pool, sorted({a.kind for a in sent.alerts}), sorted({a.server or "gateway" for a in sent.alerts}),
                           sent.title, sent.body, targets(), sent.ok, sent.error)
    return record


def watcher(figures: Figures, sink: Any, settings: Callable[[], NotifySettings]) -> Callable[[], list[Alert]]:
    """Polled conditions: disk use from the sampler's host figures, database unreachable."""
    state = {"disk": False, "db": False}

    def check() -> list[Alert]:
        out = []
        disk = (figures.host or {}).get("disk_percent")
        full = disk is not None and disk >= settings().disk_percent
        if full and not state["disk"]:
            out.append(Alert("disk", None, f"the data folder's disk is {disk:.0f}% full", "note"))
        state["disk"] = full
        since = sink.unreachable_since if sink is not None else None  # a property of Sink
        down = since is not None and (time.time() - since.timestamp()) > DATABASE_AFTER
        if down and not state["db"]:
            out.append(Alert("database", None, f"PostgreSQL unreachable since {since:%H:%M:%S}; events wait "
                                               "in the journal"))
        elif state["db"] and not down:
            out.append(Alert("database", None, "PostgreSQL is reachable again", "resolved"))
        state["db"] = down
        return out

    return check


def server_truth(rt: Any, specs: Callable[[], Any], settings: Callable[[], NotifySettings],
                 skip: frozenset[str] = frozenset()) -> TruthOf:
    """A server's truth from the runtime: its state, its spec, whether the owner stopped it."""
    def truth(name: str) -> Truth | None:
        if name in skip:  # the tunnel's connector: "tunnel offline" speaks for it
            return Truth(None, False, watched=False)
        watched = rt.intents.get(name) != "stop"
        return assess(rt.state(name), specs().get(name), watched, settings().health_after)
    return truth


def start(rt: Runtime, store: Store, sink: Sink, loaded: Loaded, figures: Figures) -> Dispatcher:
    """Wire a dispatcher into a running gateway: observe the runtime's events, read `[notify]`
    live from the loaded folder, record what is sent in `store`, watch `sink` for the database
    and the sampler's `figures` for the disk."""
    from reconciler.core.names import CONNECTOR

    settings = live_section(loaded, "notify", parse_settings, NotifySettings,
                            "alerts use the defaults and no URLs until fixed")

    def specs() -> Mapping[str, ServerSpec]:
        result = loaded()
        return result.specs if result is not None else {}

    async def load() -> list[Incident]:
        return [Incident.from_row(r) for r in await store.load_open_incidents()]

    dispatcher = Dispatcher(settings, recorder(store.pool, lambda: len(settings().urls)),
                            watcher(figures, sink, settings),
                            server_truth=server_truth(rt, specs, settings, frozenset({CONNECTOR})),
                            put=rt.put, load=load, names=lambda: list(rt.states))
    rt.subscribe(dispatcher.observe)
    return dispatcher
