"""What the page may use of the running gateway: this protocol, nothing else. The daemon
satisfies it; the page never imports `reconciler.daemon` (an import-linter contract), so a
newcomer sees here every door from the page into the engine.

Reading: `reconciler.result` (the loaded folder), `rt` (live states, intents, host figures,
rollouts; `rt.event` to record what the page did), `store` (history, samples, alerts),
`sink` (flushing before a read). Acting: `reconciler.control` (an owner's intent) and files
written into `settings.config_dir` (the watcher picks them up like any edit).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from reconciler.config import LoadResult
    from reconciler.runtime import Runtime
    from reconciler.settings import Settings
    from reconciler.store import Store
    from reconciler.store.sink import Sink


class Loaded(Protocol):
    """The reconciler as the page sees it."""

    result: LoadResult | None
    passes: int  # completed reconcile passes: a command has been seen once one more completes

    def select(self, names: Iterable[str] = (), group: str | None = None, everything: bool = False) -> list[str]: ...

    def control(self, verb: str, names: list[str], actor: str) -> None: ...

    def mark_config_dirty(self) -> None: ...  # reload the folder (e.g. a new cloudflared is there)


class Gateway(Protocol):
    settings: Settings
    rt: Runtime
    reconciler: Loaded
    store: Store | None
    sink: Sink
    url: str  # the local door
    token: str  # the local API token
    db_label: str
    stop_event: asyncio.Event
    pg: Any  # the embedded PostgreSQL, when the gateway runs its own (for a backup's DSN)

    def request_stop(self, keep_servers: bool | None = None) -> None: ...  # the gateway itself stops
