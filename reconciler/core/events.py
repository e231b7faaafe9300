"""The one vocabulary of recorded events: every `rt.event(...)` names an `EventKind`.

A kind says whether it is a warning (logged as one, listed on the page's warnings) and
which alert it feeds (`alert`, a name `ops.notify` knows). Listeners match on the kind
and on the event's structured `detail`, never on the text of its reason. A misspelt kind
fails at import (`EventKind.TYPO` is an AttributeError), not as a silent dead branch.

Pure data: no I/O here.
"""

from __future__ import annotations

from enum import StrEnum


class EventKind(StrEnum):
    # a server's phase changed (from_phase -> to_phase); `detail` may say more
    TRANSITION = "transition"
    INTENT = "intent"  # the owner asked for start / stop / restart / kill
    ERROR = "error"  # a start failed (port held, spawn refused); detail: failures, port, holder_pid
    ESCALATED = "escalated"  # restart.alert_after failures in a row
    STOP_ESCALATED = "stop_escalated"  # did not stop within its timeout: the tree was killed
    HEALTH_FAILED = "health_failed"  # one failed check of a running server; detail: failures
    NOT_ADOPTED = "not_adopted"  # a recorded process was gone (or reused) at gateway start
    FORGOTTEN = "forgotten"  # its file was removed and it is stopped
    INTERNAL_ERROR = "internal_error"  # a bug: an action raised
    CONFIG_ERROR = "config_error"  # a file does not load; detail: path, line, column, key, message
    CONFIG_FIXED = "config_fixed"
    GATEWAY_STARTED = "gateway_started"
    GATEWAY_RECOVERED = "gateway_recovered"  # this start follows an unclean stop (killed, power lost)
    HOST_EVENT = "host_event"  # Ctrl-C, SIGTERM, the terminal or console closed, log-off, shutdown; detail: event, stop
    HOST_RESUMED = "host_resumed"  # the host slept or the gateway was frozen; detail: seconds, slept, settle
    # nobody could reach the public servers for a while (off, power lost, asleep; or Cloudflare saw
    # the tunnel offline): charged to their availability; detail: since, until, cause, servers
    DARK = "dark"
    BATTERY_LOW = "battery_low"  # unplugged and below [host] battery_alert; detail: percent, secs_left
    POWER_SETTINGS = "power_settings"  # the power plan sleeps on AC, or on a closed lid; detail: fix
    GATEWAY_STOPPING = "gateway_stopping"
    GATEWAY_STOPPED = "gateway_stopped"
    DATABASE_EXITED = "database_exited"
    DATABASE_RESTARTED = "database_restarted"
    TUNNEL_CONFIG = "tunnel_config"  # a new config.yml was written
    TUNNEL_UNAVAILABLE = "tunnel_unavailable"  # [tunnel] is set but cannot run (binary, credentials)
    TUNNEL_HANDOVER = "tunnel_handover"
    TUNNEL_OFFLINE = "tunnel_offline"  # the connector is not ready (no edge connection)
    TUNNEL_ONLINE = "tunnel_online"
    TUNNEL_WAITING = "tunnel_waiting"  # offline because the internet is: held back, retried when it is back
    CLOUDFLARED_INSTALLED = "cloudflared_installed"  # the gateway fetched, checked and installed cloudflared
    CLOUDFLARED_FAILED = "cloudflared_failed"  # a fetch or an update did not work; the previous one stays
    DNS_SYNCED = "dns_synced"
    DNS_FAILED = "dns_failed"
    DNS_UNAVAILABLE = "dns_unavailable"
    SYNC_PULLED = "sync_pulled"
    SYNC_FAILED = "sync_failed"
    BACKUP_WRITTEN = "backup_written"
    BACKUP_FAILED = "backup_failed"
    CONFIG_WRITTEN = "config_written"  # the page wrote a file
    ROLLED_BACK = "rolled_back"  # a change failed before its probation was over; detail: failed_hash, why
    CHANGE_TRYING = "change_trying"  # a change starts next to the running version (no gap); detail: port, hash
    SWITCHED = "switched"  # a change without a gap: the new version took over, then the old one stopped
    CHANGE_APPLIED = "change_applied"  # a changed version passed its probation: it is the last good one
    SIGNED_IN = "signed_in"  # someone signed in to the page; detail: user, door, how, ip
    SIGN_IN_LOCKED = "sign_in_locked"  # too many wrong answers: an address or a user refused for a while
    ACCOUNT_CHANGED = "account_changed"  # a user added or removed, a password or a second step changed

    @property
    def warning(self) -> bool:
        return self in _WARNINGS

    @property
    def alert(self) -> str | None:
        """The alert this kind can raise (see `ops.notify.Classifier`), or None."""
        return _ALERTS.get(self)


K = EventKind
_WARNINGS = frozenset({
    K.ERROR, K.ESCALATED, K.STOP_ESCALATED, K.HEALTH_FAILED, K.NOT_ADOPTED, K.INTERNAL_ERROR,
    K.CONFIG_ERROR, K.DATABASE_EXITED, K.TUNNEL_UNAVAILABLE, K.TUNNEL_OFFLINE, K.DNS_FAILED, K.CLOUDFLARED_FAILED,
    K.SYNC_FAILED, K.BACKUP_FAILED, K.GATEWAY_RECOVERED, K.ROLLED_BACK, K.BATTERY_LOW, K.POWER_SETTINGS,
    K.SIGN_IN_LOCKED,
})
_ALERTS: dict[EventKind, str] = {
    K.ESCALATED: "down",
    K.ERROR: "port_held",  # only when detail["port"] is set and another program holds it
    K.HEALTH_FAILED: "health",
    K.DATABASE_EXITED: "database",
    K.TUNNEL_OFFLINE: "tunnel",
    K.ROLLED_BACK: "rollback",
    K.SYNC_FAILED: "sync",
    K.BATTERY_LOW: "battery",
}
