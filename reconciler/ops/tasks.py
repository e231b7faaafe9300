"""The operations' background tasks, each built with what it uses and added to the gateway's
runner (reconciler/engine/runner.py), which restarts one that fails: log rotation, alerts, the git
pull and the scheduled backup of `[sync]`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from reconciler.ops import Loaded, alerting, gitsync  # imported with the daemon: no slow import once it serves
from reconciler.ops.logs import rotate_forever
from reconciler.ops.notify import Dispatcher

if TYPE_CHECKING:
    from reconciler.engine.runner import Runner
    from reconciler.engine.runtime import Runtime
    from reconciler.host.sampler import Figures
    from reconciler.settings import Settings
    from reconciler.store import Store
    from reconciler.store.sink import Sink


def add_ops_tasks(runner: Runner, rt: Runtime, store: Store, sink: Sink, settings: Settings, loaded: Loaded,
                  reload: Callable[[], None], dsn: Callable[[], str | None], figures: Figures) -> Dispatcher:
    """Add the operations' tasks to `runner`. `loaded()`: the folder as last loaded (its
    `[notify]` and `[sync]` are read live); `reload()`: read the folder again (a pull brought
    commits); `dsn()`: the database's address now. Returns the alerts' dispatcher (the page's
    `notifier`): alerts see every event from the first start on; `figures`: the sampler's (the
    disk alert)."""
    alerts = alerting.start(rt, store, sink, loaded, figures)
    sync = gitsync.live_settings(loaded)
    runner.add("log-rotation", lambda: rotate_forever(rt))
    runner.add("alerts", alerts.run)
    runner.add("git-pull", lambda: gitsync.pull_forever(rt, store, settings.config_dir, reload, sync))
    runner.add("scheduled-backup", lambda: gitsync.backup_forever(rt, sync, dsn, settings.schema, settings.config_dir,
                                                                  settings.data_dir))
    return alerts
