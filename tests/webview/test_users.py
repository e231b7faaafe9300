"""`gateway user add` with and without a running gateway; a gateway stops promptly even with a
live stream open."""

from __future__ import annotations

import threading
import time

import httpx

from tests.fix_gateway import Gateway
from tests.webview.conftest import HTTP, cli, signed_in


def test_user_add_offline_then_sign_in_and_stop_with_a_stream_open(gateway: Gateway) -> None:
    env = {"GATEWAY_DSN": gateway.dsn, "GATEWAY_DB_SCHEMA": gateway.schema}
    short = cli(gateway, "user", "add", "bob", "--password-stdin", stdin="short\n", env=env)
    assert short.returncode == 2 and "too short" in short.stderr
    bad = cli(gateway, "user", "add", "bob/../x", "--password-stdin", stdin="long enough pw\n", env=env)
    assert bad.returncode == 2 and "is not a user name" in bad.stderr
    done = cli(gateway, "user", "add", "bob", "--password-stdin", stdin="long enough pw\n", env=env)
    assert done.returncode == 0 and done.stdout.strip() == "user bob added", done.stderr

    gateway.write("one", HTTP)
    gateway.start()
    gateway.wait_phase("one", "running")
    http = signed_in(gateway, "bob", "long enough pw")
    try:
        again = cli(gateway, "user", "add", "bob", "--password-stdin", stdin="another password\n")  # via the API
        assert again.returncode == 0 and "new password set, sessions ended" in again.stdout
        assert http.get("/").status_code == 303  # the old session ended with the new password
        http.close()
        http = signed_in(gateway, "bob", "another password")
        opened = threading.Event()

        def listen() -> None:
            try:
                with http.stream("GET", "/stream", timeout=30) as r:
                    for _ in r.iter_lines():
                        opened.set()
            except httpx.HTTPError:
                pass

        reader = threading.Thread(target=listen, daemon=True)
        reader.start()
        assert opened.wait(10)
        started = time.monotonic()
        assert gateway.stop() == 0
        # (a gateway with no stream open takes ~10 s to stop here as well: see the report
        # on the daemon's shutdown; the point is that an open stream does not hold it up for good)
        assert time.monotonic() - started < 20, "the open stream held the gateway up"
        reader.join(10)
    finally:
        http.close()
