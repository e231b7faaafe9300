"""Who may try a password or a code now (issue 25, item 1). Wrong answers count per door and
per address, never per user name across doors, so a stranger can lock out only themselves:

- per door and address: 10 wrong answers in 5 minutes (a password, a code, a passkey) stop
  that address at that door for the rest of the window. An IPv6 address counts as its /64
  (one home or one server gets a whole /64: counting single addresses gave it endless tries).
  The tunnel door and the laptop's door count apart: a lock earned through the tunnel never
  blocks the laptop.
- per door and user, for the second step only: 5 wrong codes in 5 minutes stop that user's
  second step at that door. Only someone who knows the password gets that far, so it bounds
  code guessing from many addresses without letting a stranger lock anyone out.
- a signed-in person changing their own password (or turning off their code app) is never
  stopped by either: their wrong current passwords count against their own session only.

Counts live in memory (a restart forgets them, as Home Assistant's address bans do unless
saved); webview.signin and webview.account consult them."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webview.infra.security import RateLimit

PER_ADDRESS = (10, 300.0)  # wrong answers, seconds
SECOND_STEP_PER_USER = (5, 300.0)
OWN_PASSWORD_PER_SESSION = (5, 300.0)


def address_key(ip: str) -> str:
    """What one client's address counts as: an IPv4 address as itself (also when written as
    ::ffff:a.b.c.d), an IPv6 address as its /64, anything else as written."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


def _limit(spec: tuple[int, float], clock: Callable[[], float]) -> RateLimit:
    return RateLimit(spec[0], spec[1], clock)


@dataclass
class LockOuts:
    """The three counts; keys are built here only."""

    clock: Callable[[], float] = time.monotonic
    address: RateLimit = field(init=False)
    second_step: RateLimit = field(init=False)
    own_password: RateLimit = field(init=False)

    def __post_init__(self) -> None:
        self.address = _limit(PER_ADDRESS, self.clock)
        self.second_step = _limit(SECOND_STEP_PER_USER, self.clock)
        self.own_password = _limit(OWN_PASSWORD_PER_SESSION, self.clock)

    @staticmethod
    def where(door: str, ip: str) -> str:
        return f"{door} {address_key(ip)}"

    @staticmethod
    def who(door: str, user: str) -> str:
        return f"{door} {user.lower()}"

    def wait(self, door: str, ip: str, second_step_user: str | None = None) -> float:
        """Seconds until this address (and, at the second step, this user) may try at this
        door again; 0: now."""
        wait = self.address.retry_after(self.where(door, ip))
        if second_step_user:
            wait = max(wait, self.second_step.retry_after(self.who(door, second_step_user)))
        return wait

    def fail(self, door: str, ip: str, second_step_user: str | None = None) -> list[str]:
        """Count one wrong answer; returns what became locked by it ("address", "user")."""
        newly = []
        for limit, key, what in ((self.address, self.where(door, ip), "address"),
                                 (self.second_step, self.who(door, second_step_user or ""), "user")):
            if what == "user" and not second_step_user:
                continue
            was = limit.retry_after(key) > 0
            limit.fail(key)
            if not was and limit.retry_after(key) > 0:
                newly.append(what)
        return newly

    def signed_in(self, door: str, user: str) -> None:
        """A sign-in at this door: the user's second-step count starts again."""
        self.second_step.clear(self.who(door, user))
