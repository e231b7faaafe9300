"""Find the cloudflared executable, or say what happens instead: the gateway fetches the
official one itself (`fetch`); the install commands remain for a computer it cannot fetch for."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

INSTALL = {
    "windows": "winget install --id Cloudflare.cloudflared",
    "debian/ubuntu": ("add Cloudflare's apt repository (https://pkg.cloudflare.com/), then "
                      "sudo apt-get install cloudflared"),
    "macos": "brew install cloudflared",
}
SETUP = ("then, if not done yet, connect Cloudflare on the page (/cloudflare) or with `gateway tunnel connect`: "
         "one API token, no cloudflared command; the gateway notices cloudflared once it is installed")


def windows_locations(environ: Mapping[str, str]) -> list[str]:
    """Where the winget package and the MSI put cloudflared.exe (patterns, most likely first)."""
    out = []
    local = environ.get("LOCALAPPDATA")
    if local:
        out.append(os.path.join(local, "Microsoft", "WinGet", "Links", "cloudflared.exe"))
        out.append(os.path.join(local, "Microsoft", "WinGet", "Packages", "Cloudflare.cloudflared_*",
                                "cloudflared.exe"))
    for var in ("ProgramFiles", "ProgramFiles(x86)"):
        base = environ.get(var)
        if base:
            out.append(os.path.join(base, "cloudflared", "cloudflared.exe"))
            out.append(os.path.join(base, "Cloudflare", "cloudflared", "cloudflared.exe"))
    return out


def find(configured: str | None = None, environ: Mapping[str, str] | None = None,
         windows: bool | None = None, data_dir: Path | None = None) -> Path | None:
    """The configured path (a file, or a name looked up on PATH), else the one the gateway
    fetched into `data_dir` (it keeps that one up to date), else `cloudflared` on PATH, else
    (on Windows) the winget/MSI install locations."""
    environ = os.environ if environ is None else environ
    if windows is None:
        from reconciler.platform import current

        windows = current().name == "windows"
    path_var = environ.get("PATH", "")
    if configured:
        candidate = Path(configured).expanduser()
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
        found = shutil.which(configured, path=path_var) if os.sep not in configured else None
        return Path(found) if found else None
    from reconciler.tunnel.fetch import executable

    fetched = executable(data_dir)
    if fetched is not None:
        return fetched
    found = shutil.which("cloudflared", path=path_var)
    if found:
        return Path(found)
    if windows:
        for pattern in windows_locations(environ):
            for hit in sorted(glob.glob(pattern), reverse=True):  # the newest package version first
                if Path(hit).is_file():
                    return Path(hit)
    return None


def missing_message(configured: str | None = None) -> str:
    """What happens when cloudflared is not found, in one paragraph."""
    if configured:
        how = "; ".join(f"{where}: {cmd}" for where, cmd in INSTALL.items())
        return (f"cloudflared not found at {configured!r} (tunnel.cloudflared in gateway.toml): fix the path, or "
                f"remove the setting and the gateway fetches the official cloudflared itself. Or install it - {how}.")
    return ("cloudflared is not there yet: the gateway is fetching the official one from Cloudflare's releases "
            f"(checked against its published checksum); {SETUP}.")
