"""Does the running tunnel connector already route a server to its new port? The no-gap
change (reconciler/replace.py) stops the old version only then. Registered on the runtime
(`rt.routes_applied`) by the tunnel's load hook, so the engine imports nothing of the tunnel."""

from __future__ import annotations

from typing import Any

from reconciler.state import Phase
from reconciler.tunnel.connector import RESERVED, ingress_hash


def routes_applied(rt: Any, name: str, port: int) -> bool:
    """Does the running tunnel connector route `name` to `port` (true when there is no tunnel,
    or no route for it)? It does once it runs on the config that says so."""
    from reconciler.tunnel.hook import plan_of

    plan: Any = plan_of(rt)
    if plan is None or plan.settings is None or plan.spec is None or plan.text is None:
        return True
    mine = [rule for rule in plan.rules if rule.server == name]
    if not mine:
        return True
    if not all(rule.service.endswith(f":{port}") for rule in mine if rule.service.startswith("http://127.0.0.1:")):
        return False  # the new config is not written yet
    running = rt.specs.get(RESERVED)
    state = rt.state(RESERVED)
    return (running is not None and state.phase is Phase.RUNNING and state.spec_hash == running.runtime_hash()
            and running.env.get("GATEWAY_INGRESS_HASH") == ingress_hash(plan.text))
