"""A named pipe, a socket or a device named `*.toml` in gateway.d (issue 25, item 14): reading
one would block for good (a pipe with no writer never ends), so the loader never opens a file
that is not a regular file; it is an error that names it, and the rest of the folder goes on.
Windows has no named pipes in a folder: there these tests have nothing to make."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.engine.config import load_dir
from tests.fix_gateway import REPO, Gateway
from tests.reconciler.test_loop import HTTP

posix_only = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")


@posix_only
def test_a_named_pipe_is_an_error_naming_it_and_the_loop_goes_on(gateway: Gateway):
    gateway.write("first", HTTP + 'port = "auto"\n')
    gateway.start()
    gateway.wait_phase("first", "running")
    pipe = gateway.config_dir / "pipe.toml"
    os.mkfifo(pipe)
    # a change after the pipe appeared is still applied (the loader did not stop on it)
    gateway.write("second", HTTP + 'port = "auto"\n')
    gateway.wait_phase("second", "running", timeout=30)
    errors = gateway.client.status()["gateway"]["config_errors"]
    assert any(e.startswith(str(pipe)) and "not a regular file" in e and "named pipe" in e for e in errors), errors
    pipe.unlink()
    gateway.write("third", HTTP + 'port = "auto"\n')
    gateway.wait_phase("third", "running", timeout=30)
    deadline = time.monotonic() + 15
    while gateway.client.status()["gateway"]["config_errors"]:
        assert time.monotonic() < deadline, gateway.client.status()["gateway"]["config_errors"]
        time.sleep(0.1)


@posix_only
def test_gateway_check_does_not_hang_on_a_pipe_a_socket_or_a_pipe_named_gateway_toml(tmp_path: Path):
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    (folder / "good.toml").write_text(HTTP + "port = 8080\n")
    os.mkfifo(folder / "pipe.toml")
    os.mkfifo(folder / "gateway.toml")
    short = Path("/tmp") / f"gw-{os.getpid()}-{time.monotonic_ns()}"  # a socket path is short
    short.mkdir()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(short / "s.toml"))
        os.symlink(short / "s.toml", folder / "sock.toml")  # a link to a socket: what it points at counts
        out = subprocess.run([sys.executable, "-m", "reconciler", "check", str(folder)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    finally:
        sock.close()
        (short / "s.toml").unlink(missing_ok=True)
        short.rmdir()
    assert out.returncode == 1, out
    text = out.stdout + out.stderr
    assert f"{folder / 'pipe.toml'}: not a regular file (a named pipe)" in text, text
    assert f"{folder / 'sock.toml'}: not a regular file (a socket)" in text, text
    assert f"{folder / 'gateway.toml'}: not a regular file (a named pipe)" in text, text


@posix_only
def test_the_loader_keeps_the_last_good_version_when_a_file_becomes_a_pipe(tmp_path: Path):
    (tmp_path / "web.toml").write_text(HTTP + "port = 8080\n")
    first = load_dir(tmp_path)
    assert "web" in first.specs and not first.errors
    (tmp_path / "web.toml").unlink()
    os.mkfifo(tmp_path / "web.toml")
    again = load_dir(tmp_path, first)
    assert again.specs["web"] == first.specs["web"] and "web" in again.stale
    assert [str(e) for e in again.errors] == [f"{tmp_path / 'web.toml'}: not a regular file (a named pipe): "
                                              "a server file must be a plain file; remove it or rename it"]
