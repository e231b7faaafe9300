"""The git-synced folder against a local bare repository (file:// remote), and the scheduled backup."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from reconciler.ops.gitsync import SyncSettingsError, parse_settings, prune, pull
from tests.fix_children import toml_str

HTTP = Path(__file__).resolve().parent.parent / "children" / "http_echo.py"
needs_git = pytest.mark.skipif(shutil.which("git") is None,
                               reason="no git on this machine (none under the Windows lane's Wine)")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@example.invalid",
                           "-c", "init.defaultBranch=main", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def remote_with_clone(tmp_path: Path, folder: Path) -> tuple[Path, Path]:
    """A bare repo seeded from `folder` (made a clone of it), and a second clone to push from."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(bare)], check=True)
    git(folder, "init", "-q", "-b", "main")
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "-m", "first", "--allow-empty")
    git(folder, "remote", "add", "origin", bare.as_uri())
    git(folder, "push", "-q", "-u", "origin", "main")
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", bare.as_uri(), str(other)], check=True)
    return bare, other


def push_file(other: Path, name: str, text: str) -> str:
    (other / name).write_text(text)
    git(other, "add", name)
    git(other, "commit", "-q", "-m", f"add {name}")
    git(other, "push", "-q")
    return git(other, "rev-parse", "HEAD")


@needs_git
def test_pull_fast_forwards_and_reports_failures(tmp_path: Path) -> None:
    folder = tmp_path / "gateway.d"
    folder.mkdir()
    _, other = remote_with_clone(tmp_path, folder)
    assert pull(folder) == pull(folder) and not pull(folder).changed  # nothing new
    commit = push_file(other, "a.toml", "x = 1\n")
    got = pull(folder)
    assert got.ok and got.changed and got.after == commit and (folder / "a.toml").exists()
    (folder / "local.txt").write_text("diverge")
    git(folder, "add", "local.txt")
    git(folder, "commit", "-q", "-m", "local")
    push_file(other, "b.toml", "y = 2\n")
    failed = pull(folder)  # diverged: --ff-only refuses, nothing changes
    assert not failed.ok and "ff-only failed" in (failed.error or "") and failed.before == failed.after
    assert not pull(tmp_path / "not-a-repo").ok


def test_settings_and_pruning(tmp_path: Path) -> None:
    assert parse_settings({"git_pull": "5m", "backup_every": "1d"}).git_pull == 300.0
    with pytest.raises(SyncSettingsError, match="sync.git_pull"):
        parse_settings({"git_pull": 5})
    for day in range(1, 6):
        (tmp_path / f"gateway-2026110{day}-000000.tar.gz").write_text("")
    assert [p.name for p in prune(tmp_path, 2)] == [f"gateway-2026110{d}-000000.tar.gz" for d in (1, 2, 3)]
    assert len(list(tmp_path.glob("*.tar.gz"))) == 2


@needs_git
def test_the_daemon_pulls_reconciles_records_and_survives_a_broken_remote(gateway: Any, tmp_path: Path) -> None:
    toml = gateway.config_dir / "gateway.toml"
    toml.write_text(toml.read_text() + '[sync]\ngit_pull = "200ms"\nbackup_every = "500ms"\nbackup_keep = 2\n')
    bare, other = remote_with_clone(tmp_path, gateway.config_dir)
    gateway.start()
    commit = push_file(other, "web.toml", f'command = [{toml_str(sys.executable)}, {toml_str(HTTP)}, "{{port}}"]\nport = "auto"\n')
    gateway.wait_phase("web", "running", timeout=20)
    bare.rename(bare.with_name("gone.git"))  # the remote disappears: pulls fail, the gateway carries on
    deadline = time.monotonic() + 15
    while not any(e["kind"] == "sync_failed" for e in gateway.events()):
        assert time.monotonic() < deadline, "no sync_failed event"
        time.sleep(0.1)
    assert gateway.status()["web"]["phase"] == "running"
    backups = gateway.data_dir / "backups"
    while len(list(backups.glob("gateway-*.tar.gz"))) < 2:
        assert time.monotonic() < deadline + 10, "no scheduled backups"
        time.sleep(0.1)
    gateway.stop()
    assert len(list(backups.glob("gateway-*.tar.gz"))) <= 2
    with psycopg.connect(gateway.read_dsn(), options=f"-c search_path={gateway.schema}") as conn:
        recorded = conn.execute("SELECT commit, ok FROM sync_commits ORDER BY id").fetchall()
    assert recorded[0] == (commit, True) and recorded[-1][1] is False


def test_without_git_the_pull_says_so_in_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-programs"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    done = pull(tmp_path)
    assert not done.ok and done.error is not None and done.error.startswith("git is not installed"), done.error
