"""Find the cloudflared executable, or say exactly how to install it and make a tunnel."""

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
         windows: bool | None = None) -> Path | None:
    """The configured path (a file, or a name looked up on PATH), else `cloudflared` on PATH,
    else (on Windows) the winget/MSI install locations."""
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
    """What to do when cloudflared is not found, in one paragraph."""
    if configured:
        head = f"cloudflared not found at {configured!r} (tunnel.cloudflared in gateway.toml)"
    else:
        head = "cloudflared is not installed (not on PATH)"
    how = "; ".join(f"{where}: {cmd}" for where, cmd in INSTALL.items())
    return f"{head}. Install it - {how}; {SETUP}."
