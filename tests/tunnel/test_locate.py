"""Finding cloudflared: the configured path, PATH, and on Windows the winget/MSI locations
(real files in a temporary folder standing in for those folders)."""

from __future__ import annotations

import sys
from pathlib import Path

from reconciler.tunnel.locate import find, missing_message


NAME = "cloudflared.exe" if sys.platform == "win32" else "cloudflared"  # what a PATH lookup finds here


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_configured_then_path_then_windows_locations(tmp_path: Path):
    assert find(None, {"PATH": str(tmp_path / "empty")}, windows=False) is None
    on_path = _exe(tmp_path / "bin" / NAME)
    assert find(None, {"PATH": str(tmp_path / "bin")}, windows=False) == on_path
    own = _exe(tmp_path / "opt" / "cf")
    assert find(str(own), {"PATH": str(tmp_path / "bin")}, windows=False) == own
    assert find(str(tmp_path / "nope"), {"PATH": str(tmp_path / "bin")}, windows=False) is None
    local = tmp_path / "Local"
    pkg = _exe(local / "Microsoft" / "WinGet" / "Packages" / "Cloudflare.cloudflared_Microsoft.Winget.Source_8wekyb3d8bbwe"
               / "cloudflared.exe")
    env = {"PATH": "", "LOCALAPPDATA": str(local), "ProgramFiles": str(tmp_path / "PF")}
    assert find(None, env, windows=True) == pkg
    assert find(None, env, windows=False) is None
    msi = _exe(tmp_path / "PF" / "cloudflared" / "cloudflared.exe")
    pkg.unlink()
    assert find(None, env, windows=True) == msi


def test_missing_message_says_the_gateway_fetches_it():
    text = missing_message()
    for part in ("the gateway is fetching the official one", "published checksum", "gateway tunnel connect"):
        assert part in text
    configured = missing_message("/opt/cf")
    for part in ("cloudflared not found at '/opt/cf'", "winget install --id Cloudflare.cloudflared",
                 "brew install cloudflared", "remove the setting and the gateway fetches"):
        assert part in configured


def test_the_fetched_one_comes_after_the_configured_and_before_path(tmp_path: Path):
    import json

    on_path = _exe(tmp_path / "bin" / NAME)
    data = tmp_path / "data"
    fetched = _exe(data / "cloudflared" / "2026.9.0" / NAME)
    env = {"PATH": str(tmp_path / "bin")}
    assert find(None, env, windows=False, data_dir=data) == on_path  # nothing recorded yet
    (data / "cloudflared" / "installed.json").write_text(json.dumps({"version": "2026.9.0",
                                                                      "file": f"2026.9.0/{NAME}"}))
    assert find(None, env, windows=False, data_dir=data) == fetched
    own = _exe(tmp_path / "opt" / "cf")
    assert find(str(own), env, windows=False, data_dir=data) == own
    fetched.unlink()  # its file gone: the next one
    assert find(None, env, windows=False, data_dir=data) == on_path
