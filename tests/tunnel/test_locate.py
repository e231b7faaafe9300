"""Finding cloudflared: the configured path, PATH, and on Windows the winget/MSI locations
(real files in a temporary folder standing in for those folders)."""

from __future__ import annotations

from pathlib import Path

from reconciler.tunnel.locate import find, missing_message


def _exe(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_configured_then_path_then_windows_locations(tmp_path: Path):
    assert find(None, {"PATH": str(tmp_path / "empty")}, windows=False) is None
    on_path = _exe(tmp_path / "bin" / "cloudflared")
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


def test_missing_message_says_how_to_install_and_connect():
    text = missing_message()
    for part in ("winget install --id Cloudflare.cloudflared", "sudo apt-get install cloudflared",
                 "brew install cloudflared", "gateway tunnel connect", "notices cloudflared once it is installed"):
        assert part in text
