"""Whether the tests run under Wine (the Windows lane) rather than a real Windows, and the marker
for what Wine 8.0 cannot do. A gap is an xfail that must fail there (strict): when Wine does it, the
test says so."""

from __future__ import annotations

import ctypes
import sys

import pytest


def _under_wine() -> bool:
    if sys.platform != "win32":
        return False
    try:
        return hasattr(ctypes.WinDLL("ntdll"), "wine_get_version")  # type: ignore[attr-defined]
    except OSError:
        return False


UNDER_WINE = _under_wine()


def wine_gap(what: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(UNDER_WINE, reason=f"Wine 8.0 gap: {what}", strict=True)


NO_OWNER_PID = wine_gap("GetExtendedTcpTable reports no owning pid, so a port's holder cannot be named")
