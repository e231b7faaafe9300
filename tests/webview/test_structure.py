"""The page's structure, as a newcomer relies on it: the memory of the running page is held by
its app (webview.infra.page.Page), never by a module; the page reaches the gateway only through the
doors webview.infra.gateway lists, and a gateway lacking one is refused by name when the page is built."""

from __future__ import annotations

import collections
import importlib
import pkgutil
import weakref
from types import SimpleNamespace

import pytest

import webview
from webview.infra.gateway import (Gateway, Journal, Live, Loaded, Looking, Notifier, Postgres, Sampled, checked, members,
                             missing)

MUTABLE = (dict, list, set, collections.deque, weakref.WeakKeyDictionary, weakref.WeakValueDictionary)


def test_no_module_of_the_page_keeps_memory() -> None:
    """Module-level dictionaries shared by every app (a test's, a bench's, the gateway's) were the
    page's caches: sessions, tokens, cards. Tables of words and constants (UPPER_CASE) are not memory."""
    kept = []
    for info in pkgutil.walk_packages(webview.__path__, "webview."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, MUTABLE) and not name.lstrip("_").isupper() and name != "routes" and not name.startswith("__"):
                kept.append(f"{info.name}.{name}")
    assert kept == []


def _complete() -> SimpleNamespace:
    parts = {"rt": Live, "figures": Sampled, "attention": Looking, "reconciler": Loaded, "sink": Journal,
             "pg": Postgres, "notifier": Notifier}
    gateway = SimpleNamespace(**{name: None for name in members(Gateway)})
    for name, protocol in parts.items():
        setattr(gateway, name, SimpleNamespace(**{member: None for member in members(protocol)}))
    return gateway


def test_a_gateway_lacking_a_door_the_page_uses_is_refused_by_name() -> None:
    assert "looked" in members(Looking) and "notifier" in members(Gateway) and "select" in members(Loaded)
    gateway = _complete()
    assert missing(gateway) == [] and checked(gateway) is gateway
    del gateway.attention.looked, gateway.notifier
    assert missing(gateway) == ["notifier", "attention.looked"]
    with pytest.raises(TypeError, match="the gateway has no notifier, attention.looked"):
        checked(gateway)
    assert "rt" in missing(object()) and "request_stop" in missing(object())
