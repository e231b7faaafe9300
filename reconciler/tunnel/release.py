"""Which official cloudflared release asset fits this computer, and what Cloudflare publishes
about it. Pure: no I/O (`fetch` downloads and installs).

The assets of a release of github.com/cloudflare/cloudflared (their build scripts:
``build-packages.sh``, ``.teamcity/windows/builds.ps1``, ``.teamcity/mac/build.sh``):
- Windows: ``cloudflared-windows-amd64.exe`` and ``cloudflared-windows-386.exe`` (no arm64
  build: Windows on Arm runs the amd64 one under its x64 emulation);
- Linux: ``cloudflared-linux-amd64``, ``-386``, ``-arm64``, ``-arm`` (ARMv6 and older),
  ``-armhf`` (ARMv7, hard float);
- macOS: ``cloudflared-darwin-amd64.tgz`` and ``cloudflared-darwin-arm64.tgz``, a gzipped tar
  holding ``cloudflared``.
(.msi, .deb, .rpm and .pkg installers are not used: the gateway keeps its own copy.)

Checksums: the release's notes end with ``### SHA256 Checksums:`` and a block of lines
``ASSET: SHA256`` (``github_message.py``). For a ``.tgz`` that checksum is of the
``cloudflared`` inside it (``github_release.py`` hashes the extracted binary). GitHub's
release API also gives each asset a ``digest`` (``sha256:...``) of the file as uploaded;
when present it is checked too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

LATEST_URL = "https://api.github.com/repos/cloudflare/cloudflared/releases/latest"
_CHECKSUM_LINE = re.compile(r"^\s*(cloudflared[\w.+-]*)\s*:\s*([0-9a-fA-F]{64})\s*$")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:[.-](\d+))?")


class ReleaseError(ValueError):
    """No fitting release or asset, or an answer that does not read; the message is in words."""


@dataclass(frozen=True)
class Asset:
    name: str  # the release asset, e.g. cloudflared-windows-amd64.exe
    binary: str  # the file name it is kept under: cloudflared.exe or cloudflared
    archive: bool  # a .tgz holding the binary (macOS)


@dataclass(frozen=True)
class Release:
    version: str  # the tag, e.g. 2026.8.2
    asset: Asset
    url: str  # where the asset downloads from
    sha256: str  # Cloudflare's published checksum (of the binary; for a .tgz, of what it holds)
    digest: str | None  # GitHub's sha256 of the asset file as uploaded, when given
    size: int | None


_ARCH = {  # platform.machine() -> Go's GOARCH (lower-cased)
    "amd64": "amd64", "x86_64": "amd64", "x64": "amd64", "em64t": "amd64",
    "x86": "386", "i386": "386", "i486": "386", "i586": "386", "i686": "386", "386": "386",
    "arm64": "arm64", "aarch64": "arm64", "armv8": "arm64", "armv8l": "arm64", "aarch64_be": None,
    "armv7l": "armhf", "armv7": "armhf", "armhf": "armhf",
    "armv6l": "arm", "armv6": "arm", "armv5tel": "arm", "armv5l": "arm", "arm": "arm",
}
_BUILDS = {
    "windows": {"amd64": "amd64", "386": "386", "arm64": "amd64"},  # Windows on Arm emulates x64
    "linux": {"amd64": "amd64", "386": "386", "arm64": "arm64", "armhf": "armhf", "arm": "arm"},
    "darwin": {"amd64": "amd64", "arm64": "arm64"},
}


def asset_for(system: str, machine: str) -> Asset:
    """The asset for `platform.system()` and `platform.machine()` (e.g. "Windows", "AMD64")."""
    os_name = {"windows": "windows", "linux": "linux", "darwin": "darwin"}.get(system.strip().lower())
    arch = _ARCH.get(machine.strip().lower())
    build = _BUILDS.get(os_name or "", {}).get(arch or "")
    if os_name is None or build is None:
        raise ReleaseError(f"Cloudflare publishes no cloudflared for this computer ({system or '?'} on "
                           f"{machine or '?'}): install one yourself and set tunnel.cloudflared in gateway.toml")
    if os_name == "windows":
        return Asset(f"cloudflared-windows-{build}.exe", "cloudflared.exe", False)
    if os_name == "darwin":
        return Asset(f"cloudflared-darwin-{build}.tgz", "cloudflared", True)
    return Asset(f"cloudflared-linux-{build}", "cloudflared", False)


def checksums(notes: str) -> dict[str, str]:
    """``ASSET: SHA256`` lines of a release's notes (the "SHA256 Checksums" block), lower-cased."""
    out: dict[str, str] = {}
    for line in notes.splitlines():
        m = _CHECKSUM_LINE.match(line.strip().strip("`").strip())
        if m:
            out[m.group(1)] = m.group(2).lower()
    return out


def pick(answer: Any, asset: Asset) -> Release:
    """The release API's answer (``GET .../releases/latest``) -> what to download for `asset`."""
    if not isinstance(answer, dict) or not isinstance(answer.get("tag_name"), str):
        raise ReleaseError("GitHub's answer about cloudflared's latest release could not be read")
    version = answer["tag_name"].strip().removeprefix("v")
    found = next((a for a in answer.get("assets") or [] if isinstance(a, dict) and a.get("name") == asset.name), None)
    if found is None or not isinstance(found.get("browser_download_url"), str):
        raise ReleaseError(f"cloudflared {version} has no {asset.name} to download")
    published = checksums(str(answer.get("body") or "")).get(asset.name)
    digest = found.get("digest")
    digest = digest.split(":", 1)[1].lower() if isinstance(digest, str) and digest.startswith("sha256:") else None
    if published is None:
        raise ReleaseError(f"Cloudflare published no SHA256 checksum for {asset.name} in cloudflared {version}'s "
                           "release notes, so it cannot be checked: not installed")
    size = found.get("size")
    return Release(version, asset, found["browser_download_url"], published, digest,
                   size if isinstance(size, int) else None)


def version_key(version: str) -> tuple[int, ...]:
    """2026.8.2 -> (2026, 8, 2, 0); what does not read sorts first."""
    m = _VERSION.match(version.strip().removeprefix("v"))
    if m is None:
        return ()
    return tuple(int(g or 0) for g in m.groups())


def newer(candidate: str, installed: str | None) -> bool:
    return installed is None or version_key(candidate) > version_key(installed)


def version_of(output: str) -> str | None:
    """``cloudflared --version`` -> "2026.8.2" (``cloudflared version 2026.8.2 (built ...)``)."""
    m = re.search(r"version\s+v?(\d+\.\d+\.\d+(?:[.-]\d+)?)", output)
    return m.group(1) if m else None
