"""What the page may use of the running gateway: these protocols, nothing else. The daemon
satisfies them (checked when the page is built: `checked`); the page never imports
`reconciler.daemon` (an import-linter contract), so a newcomer sees here every door from
the page into the engine.

Reading: `reconciler.result` (the loaded folder), `rt` (`Live`: the servers' states, the
operator's intents, ports, whether the internet answers, rollouts, the gateway's own parts),
`figures` (`Sampled`: the sampler's host and server figures, availability), `store` (history, samples, alerts, and the accounts' and tokens' SQL in
reconciler.store, which take it), `sink` (`Journal`: flushing before a read, whether the
database answers), `notifier` (the alerts in force, a test alert). Acting: `attention.looked`
(someone looks: the sampler's figures at full rate), `rt.event` (to
record what the page did), `reconciler.control` (an owner's intent), files written into
`settings.config_dir` (the watcher picks them up like any edit, `reconciler.mark_config_dirty`
for a folder changed otherwise), `request_stop` (the gateway itself).

Besides these the page calls engine functions with what it holds of them: the tunnel's
state by `rt` (reconciler.tunnel.status, .hook, .getter: the runtime's `routing` is the
tunnel, `tunnel_of(rt)`, which owns its memory), a try with `settings` (reconciler.engine.trial), backups and autostart with `settings`
and the database's address (reconciler.ops), and the pure schema (reconciler.core.spec, .config).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from reconciler.core.events import EventKind
    from reconciler.core.spec import ServerSpec
    from reconciler.core.state import ServerState
    from reconciler.engine.config import LoadResult
    from reconciler.engine.own import OwnPart
    from reconciler.ops.notify import Alert, NotifySettings, Sent
    from reconciler.settings import Settings
    from reconciler.store import Store


class Loaded(Protocol):
    """The reconciler as the page sees it."""

    @property
    def result(self) -> LoadResult | None: ...

    @property
    def passes(self) -> int: ...  # completed reconcile passes: a command has been seen once one more completes

    def select(self, names: Iterable[str] = (), group: str | None = None, everything: bool = False) -> list[str]: ...

    def control(self, verb: str, names: list[str], actor: str) -> None: ...

    def mark_config_dirty(self) -> None: ...  # reload the folder (e.g. a new cloudflared is there)


class Live(Protocol):
    """The runtime (reconciler.engine.runtime.Runtime) as the page reads it: what each card, the API and
    /metrics show, and the two things the page does with it (record an event, wait for a
    change)."""

    @property
    def states(self) -> Mapping[str, ServerState]: ...

    @property
    def intents(self) -> Mapping[str, str]: ...  # the operator's "stop"

    @property
    def ports(self) -> Mapping[str, int]: ...  # sticky automatic ports

    @property
    def internet_ok(self) -> bool | None: ...  # the sampler's look at the internet (the tunnel's state reads it)

    @property
    def rollouts(self) -> Rollouts: ...  # each server's remembered versions

    @property
    def own_parts(self) -> Mapping[str, OwnPart]: ...  # the gateway's own parts (the tunnel)

    @property
    def changed(self) -> asyncio.Event: ...  # replaced on every change: wait on the one you hold

    def state(self, name: str) -> ServerState: ...

    def event(self, kind: EventKind, server: str | None, reason: str, *, actor: str = "gateway",
              detail: dict[str, Any] | None = None) -> None: ...

    async def wait_until(self, done: Callable[[], bool], timeout: float) -> bool: ...


class Sampled(Protocol):
    """The sampler's latest figures (reconciler.host.sampler.Figures) as the page reads them."""

    @property
    def host(self) -> Mapping[str, Any]: ...  # the host line's latest figures (as the sampler sends them)

    @property
    def resources(self) -> Mapping[str, Mapping[str, float | int]]: ...  # CPU, RSS per server tree

    @property
    def uptime(self) -> Mapping[str, Mapping[str, Any]]: ...  # availability per server and period


class Looking(Protocol):
    """Who looks (reconciler.host.sampler.Attention): the page tells it, the sampler's rate follows."""

    def looked(self) -> None: ...  # a person (or a status client) looks: figures at full rate


class Rollouts(Protocol):
    """The remembered versions (reconciler.engine.rollout_memory.RolloutMemory) as the page reads them."""

    @property
    def last_good(self) -> Mapping[str, ServerSpec]: ...

    @property
    def answered(self) -> Mapping[str, ServerSpec]: ...

    @property
    def failed(self) -> Mapping[str, str]: ...  # a rolled back change: server -> its runtime hash

    @property
    def failed_why(self) -> Mapping[str, str]: ...

    @property
    def failed_facts(self) -> Mapping[str, Mapping[str, Any]]: ...


class Journal(Protocol):
    """The write-behind sink (reconciler.store.sink.Sink) as the page sees it."""

    @property
    def db_ok(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    @property
    def unreachable_since(self) -> datetime | None: ...

    async def flush(self, timeout: float) -> bool: ...


class Postgres(Protocol):
    """The embedded PostgreSQL, when the gateway runs its own (a backup needs its address)."""

    @property
    def dsn(self) -> str | None: ...


class Notifier(Protocol):
    """The alerts' dispatcher (reconciler.ops.notify.Dispatcher), once alerts run."""

    @property
    def settings(self) -> Callable[[], NotifySettings]: ...  # `[notify]` as in force now

    async def send(self, batch: list[Alert], settings: NotifySettings, test: bool = False) -> Sent: ...


class Gateway(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def rt(self) -> Live: ...

    @property
    def figures(self) -> Sampled: ...

    @property
    def attention(self) -> Looking: ...

    @property
    def reconciler(self) -> Loaded: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def sink(self) -> Journal: ...

    @property
    def url(self) -> str: ...  # the local door

    @property
    def token(self) -> str: ...  # the local API token

    @property
    def db_label(self) -> str: ...

    @property
    def stop_event(self) -> asyncio.Event: ...

    @property
    def pg(self) -> Postgres | None: ...

    @property
    def notifier(self) -> Notifier | None: ...  # set by reconciler.ops.alerting before the page is built

    def request_stop(self, keep_servers: bool | None = None) -> None: ...  # the gateway itself stops


def members(protocol: type) -> list[str]:
    """The names a protocol above asks for."""
    return sorted(name for name, value in vars(protocol).items()
                  if not name.startswith("_") and (callable(value) or isinstance(value, property)))


def missing(daemon: object) -> list[str]:
    """The doors the page uses that `daemon` does not have (by name, e.g. "attention.looked")."""
    parts: list[tuple[str, object, type]] = [("", daemon, Gateway)]
    for name, protocol in (("rt", Live), ("figures", Sampled), ("attention", Looking), ("reconciler", Loaded),
                           ("sink", Journal), ("pg", Postgres),
                           ("notifier", Notifier)):
        part = getattr(daemon, name, None)
        if part is not None:
            parts.append((f"{name}.", part, protocol))
    rollouts = getattr(getattr(daemon, "rt", None), "rollouts", None)
    if rollouts is not None:
        parts.append(("rt.rollouts.", rollouts, Rollouts))
    return [f"{where}{name}" for where, part, protocol in parts for name in members(protocol)
            if not hasattr(part, name)]


def checked(daemon: object) -> Gateway:
    """`daemon` as the page sees it, once it has every door the page uses: one that lacks one is
    refused when the page is built, naming it, not when a page first asks."""
    lacking = missing(daemon)
    if lacking:
        raise TypeError(f"the page cannot be built: the gateway has no {', '.join(lacking)} (webview.infra.gateway)")
    return cast("Gateway", daemon)
