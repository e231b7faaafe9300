"""Hostnames as DNS and cloudflared see them: the lower-case ASCII (UTS-46, IDNA 2008) form.

cloudflared compares a request's host with a rule's text case-sensitively (or with its
punycode form), and browsers send lower case: so rules are emitted, and two rules compared,
in this one form (``Shop.example.com`` and ``shop.example.com``, or ``bücher.example`` and
``xn--bcher-kva.example``, are one hostname). Python's ``idna`` codec is IDNA 2003 (``faß`` ->
``fass``); the `idna` package with UTS-46 (non-transitional, like Go's ``idna.Lookup``) gives
``xn--fa-hia``. Also refused here, although cloudflared accepts them, because they can never
work: ``*example.com`` (matches only that literal text), a label over 63 characters (DNS
refuses it), ``*`` with a path (matches every hostname, but has no DNS name), a line break or
space anywhere (a request's host never has one), an IP address, a single word (``shop``),
a wildcard of a whole top-level domain (``*.com``), and a punycode label that does not decode
(``xn--zz``): no DNS record can route any of them to the tunnel. `in_zones` says whether a
name is under one of the account's domains. Pure.
"""

from __future__ import annotations

import ipaddress
import re

_DNS_NAME = re.compile(r"^[*_a-zA-Z0-9][-_.a-zA-Z0-9]*$")  # cloudflared subcommands.go hostNameRegex


class HostnameError(ValueError):
    """A hostname that cannot work; the message says why and what to write instead."""


def ascii_hostname(hostname: str) -> str:
    """The lower-case ASCII form (``*.`` kept); raises HostnameError when there is none."""
    if hostname in ("", "*"):
        return hostname
    wild = hostname.startswith("*.")
    rest = hostname[2:] if wild else hostname
    if rest.isascii():
        out = rest.lower()
    else:
        import idna  # only for a non-ASCII name

        try:
            mapped = idna.uts46_remap(rest, std3_rules=False, transitional=False)
            out = ".".join(label.lower() if label.isascii() else idna.alabel(label).decode()
                           for label in mapped.split("."))
        except (idna.IDNAError, UnicodeError) as exc:
            raise HostnameError(f"{hostname!r} is not a valid hostname: it has no ASCII form ({exc})") from None
    return ("*." if wild else "") + out


def check_works(hostname: str, path: str = "") -> None:
    """What cloudflared accepts but can never be reached (see the module docstring), and the
    syntax ``cloudflared tunnel route dns`` requires."""
    if hostname == "*" and path:
        raise HostnameError("hostname \"*\" with a path matches every hostname, but there is no DNS name to "
                            "route to it: use a wildcard of your domain, e.g. \"*.example.com\"")
    if hostname.startswith("*") and not hostname.startswith("*.") and hostname != "*":
        raise HostnameError(f"{hostname!r} only ever matches the literal text {hostname!r}: a wildcard must be "
                            f"a whole first label, e.g. {'*.' + hostname[1:].lstrip('.')!r}")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in hostname):
        raise HostnameError(f"{hostname!r} is not a valid hostname: it has a space or a line break, which a "
                            "request's hostname never has")
    name = ascii_hostname(hostname)
    if name in ("", "*"):
        return
    if not _DNS_NAME.fullmatch(name) or ".." in name or name.endswith(".") or name.startswith("."):
        raise HostnameError(f"{hostname!r} is not a valid hostname: use letters, digits, '-', '_' and '.', "
                            "optionally starting with '*.' (e.g. blog.example.com)")
    bare = name[2:] if name.startswith("*.") else name
    try:
        ipaddress.ip_address(bare)
    except ValueError:
        pass
    else:
        raise HostnameError(f"{hostname!r} is an IP address: Cloudflare routes names to a tunnel, not addresses "
                            "(use a name under your domain, e.g. blog.example.com)")
    if "." not in bare:
        if name.startswith("*."):
            raise HostnameError(f"{hostname!r} would cover a whole top-level domain, which is no one's domain: use "
                                f"a wildcard under your domain, e.g. '*.example.{bare}'")
        raise HostnameError(f"{hostname!r} is a single word: a public address needs a domain, e.g. "
                            f"'{bare}.example.com'")
    for label in bare.split("."):
        if label.startswith("xn--") and not _decodes(label):
            raise HostnameError(f"{hostname!r} has the label {label!r}, which is not valid punycode: write the name "
                                "as you read it (e.g. bücher.example.com) and the gateway encodes it")
    long = next((label for label in name.split(".") if len(label) > 63), None)
    if long is not None:
        raise HostnameError(f"{hostname!r} has a label of {len(long)} characters ({long[:20]}...): DNS allows "
                            "at most 63 between two dots")
    if len(name) > 253:
        raise HostnameError(f"{hostname!r} is {len(name)} characters long: DNS allows at most 253")


def _decodes(label: str) -> bool:
    """An ``xn--`` label that decodes to a valid IDNA 2008 label."""
    import idna

    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        return False
    return True


def in_zones(hostname: str, zones: tuple[str, ...]) -> bool:
    """Is the (ASCII) hostname one of the `zones` or under one (``*.`` counts as under)?"""
    name = hostname[2:] if hostname.startswith("*.") else hostname
    return any(name == zone or name.endswith("." + zone) for zone in zones)
