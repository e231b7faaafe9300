"""The command line's small promises: a closed pipe is no error, `events` says when there is
more than it shows, `check` lists errors in file and line order (a real gateway where needed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.fix_gateway import REPO, Gateway
from tests.reconciler.test_loop import HTTP

GATEWAY = [sys.executable, "-m", "reconciler"]


def test_status_into_a_closed_pipe_is_no_traceback(gateway: Gateway):
    for i in range(30):
        gateway.write(f"s{i:02d}", HTTP + 'port = "auto"\n')
    gateway.start()
    # the pipe's reader is gone before status writes: its first write hits a closed pipe, as with
    # `gateway status | head -1` once head has its line (Windows says EINVAL where POSIX says EPIPE)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([*GATEWAY, "status", "--data-dir", str(gateway.data_dir)], cwd=REPO,
                             stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60,
                             env={**os.environ, "PYTHONUNBUFFERED": "1"})
    finally:
        os.close(write_end)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr


def test_events_says_when_there_are_more(gateway: Gateway):
    gateway.write("web", HTTP + 'port = "auto"\n')
    gateway.start()
    gateway.wait_phase("web", "running")
    run = lambda *a: subprocess.run([*GATEWAY, "events", *a, "--data-dir", str(gateway.data_dir)],  # noqa: E731
                                    cwd=REPO, capture_output=True, text=True, timeout=60)
    few = run("--limit", "2")
    assert few.returncode == 0 and len(few.stdout.splitlines()) == 2
    assert "only the newest 2 are shown; --limit N shows more" in few.stderr
    every = run("--limit", "1000")
    assert "more events" not in every.stderr
    assert every.stdout.splitlines()[-2:] == few.stdout.splitlines()  # the newest, oldest first


def test_check_lists_errors_by_file_then_line(tmp_path: Path):
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    for name in ("zeta", "alpha", "mid"):
        (folder / f"{name}.toml").write_text('command = ["x"]\nport = 70000\nfoo = 1\n')
    out = subprocess.run([*GATEWAY, "check", str(folder)], cwd=REPO, capture_output=True, text=True, timeout=60)
    found = [re.match(r"(.+\.toml):(\d+):", line) for line in out.stdout.splitlines()]  # C:\... has a colon too
    lines = [m.group(0) for m in found if m]
    keys = [(Path(m.group(1)).name, int(m.group(2))) for m in found if m]
    assert keys == sorted(keys) and [k[0] for k in keys][::2] == ["alpha.toml", "mid.toml", "zeta.toml"], lines


def test_settings_of_a_folder_that_does_not_exist_yet_are_the_defaults(tmp_path, monkeypatch):
    """`gateway autostart install --print` before the folder exists: defaults, no error."""
    from reconciler.settings import DEFAULT_LISTEN, peek, resolve

    for name in ("GATEWAY_DSN", "GATEWAY_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    settings = resolve(str(tmp_path / "not-yet"), str(tmp_path / "data"))
    assert (settings.dsn, settings.listen) == (None, DEFAULT_LISTEN)
    assert peek(tmp_path / "not-yet") == (None, DEFAULT_LISTEN)
    (tmp_path / "gw").mkdir()
    (tmp_path / "gw" / "gateway.toml").write_text('[database]\ndsn = "postgresql://x/y"\n[web]\nlisten = "127.0.0.1:9"\n')
    assert peek(tmp_path / "gw") == ("postgresql://x/y", "127.0.0.1:9")
    assert (resolve(str(tmp_path / "gw")).dsn, resolve(str(tmp_path / "gw")).listen) == peek(tmp_path / "gw")
