"""Get cloudflared for the gateway: the official release asset for this computer
(`release.asset_for`), downloaded from GitHub, its SHA256 checked against the checksum
Cloudflare publishes with the release (and GitHub's own digest of the file, when given)
before it is used, and kept in the data folder:

    DATA/cloudflared/2026.8.2/cloudflared.exe      one folder per version
    DATA/cloudflared/installed.json               which one is in use, and the one before

A download that fails or does not match raises `FetchError` (in words) and changes nothing:
the previous cloudflared stays in use. `revert` goes back to the previous version (an upgrade
whose connector did not come up). The release server's address is `GATEWAY_CLOUDFLARED_RELEASES`
(tests run a local stand-in), else GitHub's API.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.platform.fsutil import atomic_write
from reconciler.tunnel.release import LATEST_URL, Asset, Release, ReleaseError, asset_for, pick

FOLDER = "cloudflared"
STATE = "installed.json"
RELEASES_ENV = "GATEWAY_CLOUDFLARED_RELEASES"
TIMEOUT = 60.0  # seconds without progress before a download is given up
MAX_SIZE = 300 << 20  # no cloudflared is this big: a server sending more is not followed


class FetchError(Exception):
    """Why cloudflared could not be fetched or checked, in words; nothing was changed."""


@dataclass(frozen=True)
class Installed:
    version: str
    path: Path
    sha256: str
    previous: dict[str, Any] | None = None


def folder(data_dir: Path) -> Path:
    return Path(data_dir) / FOLDER


def releases_url() -> str:
    return os.environ.get(RELEASES_ENV) or LATEST_URL


def this_asset() -> Asset:
    return asset_for(platform.system(), platform.machine())


def installed(data_dir: Path) -> Installed | None:
    """The cloudflared the gateway fetched and uses (None: none, or its file is gone)."""
    try:
        data = json.loads((folder(data_dir) / STATE).read_text(encoding="utf-8"))
        path = folder(data_dir) / str(data["file"])
        if not path.is_file():
            return None
        return Installed(str(data["version"]), path, str(data.get("sha256") or ""), data.get("previous"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def executable(data_dir: Path | None) -> Path | None:
    found = installed(data_dir) if data_dir is not None else None
    return found.path if found else None


async def latest(asset: Asset | None = None, url: str | None = None) -> Release:
    """What the newest release offers for this computer (raises FetchError in words)."""
    import httpx

    asset = asset or this_asset()
    where = url or releases_url()
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False, follow_redirects=True,
                                     headers={"Accept": "application/vnd.github+json"}) as client:
            reply = await client.get(where)
    except httpx.HTTPError as exc:
        raise FetchError("cannot reach GitHub, where Cloudflare publishes cloudflared: check this laptop's internet "
                         "connection") from exc
    if reply.status_code != 200:
        raise FetchError(f"GitHub did not say which cloudflared is the newest (HTTP {reply.status_code})")
    try:
        return pick(reply.json(), asset)
    except ValueError as exc:  # ReleaseError, or JSON that does not read
        raise FetchError(str(exc) if isinstance(exc, ReleaseError) else
                         "GitHub's answer about cloudflared could not be read") from None


async def download(release: Release, to: Path) -> None:
    """The asset into the file `to` (streamed), checked against GitHub's digest when given."""
    import httpx

    digest = hashlib.sha256()
    total = 0
    to.parent.mkdir(parents=True, exist_ok=True)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False, follow_redirects=True) as client:
            async with client.stream("GET", release.url) as reply:
                if reply.status_code != 200:
                    raise FetchError(f"the download of {release.asset.name} failed (HTTP {reply.status_code})")
                with open(to, "wb") as out:
                    async for chunk in reply.aiter_bytes():
                        total += len(chunk)
                        if total > MAX_SIZE:
                            raise FetchError(f"the download of {release.asset.name} was larger than any cloudflared")
                        digest.update(chunk)
                        out.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchError(f"the download of {release.asset.name} broke off: check this laptop's internet "
                         "connection") from exc
    if release.size is not None and total != release.size:
        raise FetchError(f"the download of {release.asset.name} is not the size GitHub gives ({total} bytes instead of "
                         f"{release.size}): it was cut off or changed on the way")
    if release.digest is not None and digest.hexdigest() != release.digest:
        raise FetchError(f"the download of {release.asset.name} does not match GitHub's checksum of it: it was "
                         "damaged or changed on the way")


def binary_of(release: Release, downloaded: Path, to: Path) -> None:
    """The cloudflared executable of the asset into `to` (a .tgz holds it as `cloudflared`)."""
    if not release.asset.archive:
        os.replace(downloaded, to)
        return
    try:
        with tarfile.open(downloaded, mode="r:gz") as archive:
            member = next((m for m in archive.getmembers() if m.name.lstrip("./") == "cloudflared"), None)
            if member is None or not member.isreg():
                raise FetchError(f"{release.asset.name} holds no cloudflared")
            extracted = archive.extractfile(member)
            assert extracted is not None
            with open(to, "wb") as out:
                shutil.copyfileobj(extracted, out)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise FetchError(f"{release.asset.name} could not be opened: {exc}") from None


def verify(release: Release, binary: Path) -> str:
    """The binary's SHA256, when it is the one Cloudflare published; else FetchError."""
    digest = hashlib.sha256()
    with open(binary, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    got = digest.hexdigest()
    if got != release.sha256:
        raise FetchError(f"the downloaded cloudflared {release.version} does not match the checksum Cloudflare "
                         f"published for {release.asset.name} (expected {release.sha256[:12]}…, got {got[:12]}…)")
    return got


def place(data_dir: Path, release: Release, binary: Path, sha256: str) -> Installed:
    """Move a checked binary into its version's folder and make it the one in use."""
    base = folder(data_dir)
    target = base / release.version / release.asset.binary
    target.parent.mkdir(parents=True, exist_ok=True)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IRUSR)
    before = installed(data_dir)
    if before is not None and before.path == target:  # the same version again (a repair): keep the file in use
        binary.unlink(missing_ok=True)
        return before
    os.replace(binary, target)
    previous = ({"version": before.version, "file": str(before.path.relative_to(base)), "sha256": before.sha256}
                if before is not None else None)
    record = {"version": release.version, "file": str(target.relative_to(base)), "sha256": sha256,
              "asset": release.asset.name, "installed_at": time.time(), "previous": previous}
    atomic_write(base / STATE, json.dumps(record, indent=2) + "\n")
    _tidy(base, {release.version, str(previous["version"]) if previous else ""})
    return Installed(release.version, target, sha256, previous)


async def install(data_dir: Path, release: Release) -> Installed:
    """Download, check and install `release` (raises FetchError; then nothing changed)."""
    import asyncio

    base = folder(data_dir)
    downloaded = base / f".download-{os.getpid()}"
    binary = base / f".binary-{os.getpid()}"
    try:
        await download(release, downloaded)
        await asyncio.to_thread(binary_of, release, downloaded, binary)
        sha256 = await asyncio.to_thread(verify, release, binary)
        return await asyncio.to_thread(place, data_dir, release, binary, sha256)
    finally:
        downloaded.unlink(missing_ok=True)
        binary.unlink(missing_ok=True)


def rejected(data_dir: Path) -> str | None:
    """A version that was installed and then given up (its connector did not come up)."""
    try:
        value = json.loads((folder(data_dir) / STATE).read_text(encoding="utf-8")).get("rejected")
    except (OSError, ValueError, AttributeError):
        return None
    return str(value) if value else None


def revert(data_dir: Path) -> Installed | None:
    """Go back to the version used before the last install (its files are kept)."""
    now = installed(data_dir)
    if now is None or not now.previous:
        return None
    base = folder(data_dir)
    previous = now.previous
    if not (base / str(previous["file"])).is_file():
        return None
    record = {"version": previous["version"], "file": previous["file"], "sha256": previous.get("sha256", ""),
              "installed_at": time.time(), "previous": None, "rejected": now.version}
    atomic_write(base / STATE, json.dumps(record, indent=2) + "\n")
    return installed(data_dir)


def _tidy(base: Path, keep: set[str]) -> None:
    """Remove older versions' folders (a running one on Windows cannot be: left for next time)."""
    for entry in base.iterdir():
        if entry.is_dir() and entry.name not in keep:
            shutil.rmtree(entry, ignore_errors=True)
