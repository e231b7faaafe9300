"""Pure port choice for `port = "auto"`: the sticky previous port, else the first free
one in the range. Whether the OS agrees the port is free is checked at spawn time."""

from __future__ import annotations

from typing import Collection, Mapping

from reconciler.core.spec import ServerSpec


class NoFreePort(Exception):
    pass


def taken_ports(specs: Mapping[str, ServerSpec], assigned: Mapping[str, int], but: str) -> set[int]:
    """Ports other servers hold: fixed ones from their files and sticky auto ones."""
    taken = {s.port for n, s in specs.items() if n != but and isinstance(s.port, int)}
    taken.update(p for n, p in assigned.items() if n != but and n in specs)
    return taken


def choose_port(
    name: str,
    specs: Mapping[str, ServerSpec],
    assigned: Mapping[str, int],
    busy: Collection[int],
    port_range: tuple[int, int],
) -> int | None:
    """The port `name` should listen on, or None when it declares none."""
    spec = specs[name]
    if spec.port is None or isinstance(spec.port, int):
        return spec.port
    taken = taken_ports(specs, assigned, but=name)
    sticky = assigned.get(name)
    if sticky is not None and sticky not in taken and sticky not in busy:
        return sticky
    lo, hi = port_range
    for port in range(lo, hi + 1):
        if port not in taken and port not in busy:
            return port
    raise NoFreePort(f"every port in {lo}-{hi} is taken")
