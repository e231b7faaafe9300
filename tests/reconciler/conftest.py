"""Fixtures of the reconciler tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fix_gateway import Gateway, finish, own_port_range


@pytest.fixture
def own_db_gateway(tmp_path: Path, pg_dsn: str) -> Iterator[Gateway]:
    """A gateway with its own embedded PostgreSQL in its data folder (the shared-database case)."""
    config = tmp_path / "gateway.d"
    config.mkdir()
    own_port_range(config)  # as the `gateway` fixture's
    gw = Gateway(config, tmp_path / "data", "", f"t_{uuid.uuid4().hex[:12]}")
    try:
        yield gw
    finally:
        finish(gw, pg_dsn)
