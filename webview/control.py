"""Start / stop / restart from any front end (the CLI's API, the page): record the operator's
intent through the reconciler, then wait until the loop has acted on it and the servers settled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from reconciler.core.state import ALIVE, Phase

if TYPE_CHECKING:
    from webview.infra.gateway import Gateway

VERBS = ("start", "stop", "restart", "kill", "retry")
SETTLED = {Phase.RUNNING, Phase.STOPPED, Phase.BACKOFF, Phase.ERROR}
MAX_WAIT = 120.0


class ControlError(Exception):
    """A control request naming nothing, or something unknown. `status` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def known_names(daemon: Gateway) -> set[str]:
    rec = daemon.reconciler
    return set(rec.result.specs if rec.result else ()) | set(daemon.rt.states)


CUTS = ("stop", "kill", "restart")  # what a request through the tunnel may not do to the tunnel itself


async def control(daemon: Gateway, verb: str, names: list[str], group: str | None, everything: bool,
                  actor: str, wait: float, remote: bool = False) -> list[str]:
    """Apply `verb` to the selected servers; return their names once settled (or `wait` s).
    `remote`: the request came through the tunnel door, which may not stop or restart the
    gateway's own parts (the tunnel carries that very request)."""
    if verb not in VERBS:
        raise ControlError(400, f"verb must be one of {', '.join(VERBS)}")
    rec = daemon.reconciler
    selected = rec.select(names, group, everything)
    own = [n for n in selected if n in daemon.rt.own_parts]
    if remote and verb in CUTS and own:
        raise ControlError(403, f"{', '.join(own)} carries this page to you over the internet: it can be stopped or "
                                "restarted only on the laptop itself (from here, that would cut you off)")
    unknown = [n for n in selected if n not in known_names(daemon)]
    if unknown:
        raise ControlError(404, f"no server named {', '.join(unknown)}")
    if not selected:
        raise ControlError(404, "no server matches" + (f" group {group!r}" if group else ""))
    if verb == "retry":
        nothing = [n for n in selected if n not in daemon.rt.rollouts.failed]
        if nothing:
            raise ControlError(409, f"nothing to retry for {', '.join(nothing)}: its last change was not rolled back")
    before = {n: daemon.rt.state(n).started_at for n in selected}
    rec.control(verb, selected, actor)
    after_pass = rec.passes + 1  # the loop has seen the command once it completes one more pass
    wait = min(wait, MAX_WAIT)
    if wait > 0 and verb == "retry":  # the change's trial takes its start period: the card shows it under way
        await daemon.rt.wait_until(lambda: rec.passes > after_pass, wait)
    elif wait > 0:
        await daemon.rt.wait_until(
            lambda: rec.passes > after_pass and all(settled(daemon, n, verb, before[n]) for n in selected), wait)
    return selected


def settled(daemon: Gateway, name: str, verb: str, started_before: float | None) -> bool:
    state = daemon.rt.state(name)
    if verb in ("stop", "kill"):
        return state.phase not in ALIVE
    if verb in ("restart", "retry") and state.started_at == started_before and state.phase in ALIVE:
        return False
    spec = daemon.reconciler.result.specs.get(name) if daemon.reconciler.result else None
    if spec is None or not spec.enabled:
        return state.phase not in ALIVE
    return state.phase in SETTLED and not state.restart_requested
