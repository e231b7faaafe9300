"""Test plugins: fixtures live in tests/fix_*.py modules (psycopg's layout)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reconciler.platform import current

pytest_plugins = ("tests.fix_alone", "tests.fix_children", "tests.fix_db", "tests.fix_gateway")


def pytest_asyncio_loop_factories(config: Any, item: Any) -> Mapping[str, Callable[[], Any]]:
    """The tests' event loops are the gateway's own (`reconciler.platform.aio.run`): on Windows a selector
    loop, the one psycopg's async mode accepts."""
    return {"loop": current().new_event_loop}
