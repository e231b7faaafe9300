"""Which official cloudflared asset fits a computer (every case), and reading what a release
publishes: its SHA256 Checksums block (a .tgz's checksum being of the binary inside), GitHub's
digest, versions. Pure: no network, no files."""

from __future__ import annotations

import pytest

from reconciler.tunnel.release import (
    Asset,
    ReleaseError,
    asset_for,
    checksums,
    newer,
    pick,
    version_key,
    version_of,
)

EXE, TGZ = "cloudflared.exe", "cloudflared"


@pytest.mark.parametrize("system, machine, asset", [
    # Windows: platform.machine() says AMD64, x86 (32-bit Python), ARM64; there is no arm64 build:
    # Windows on Arm runs the amd64 one under its x64 emulation
    ("Windows", "AMD64", Asset("cloudflared-windows-amd64.exe", EXE, False)),
    ("Windows", "x86", Asset("cloudflared-windows-386.exe", EXE, False)),
    ("Windows", "i686", Asset("cloudflared-windows-386.exe", EXE, False)),
    ("Windows", "ARM64", Asset("cloudflared-windows-amd64.exe", EXE, False)),
    ("windows", "amd64", Asset("cloudflared-windows-amd64.exe", EXE, False)),
    ("Linux", "x86_64", Asset("cloudflared-linux-amd64", TGZ, False)),
    ("Linux", "i686", Asset("cloudflared-linux-386", TGZ, False)),
    ("Linux", "i386", Asset("cloudflared-linux-386", TGZ, False)),
    ("Linux", "aarch64", Asset("cloudflared-linux-arm64", TGZ, False)),
    ("Linux", "armv8l", Asset("cloudflared-linux-arm64", TGZ, False)),
    ("Linux", "armv7l", Asset("cloudflared-linux-armhf", TGZ, False)),
    ("Linux", "armv6l", Asset("cloudflared-linux-arm", TGZ, False)),
    ("Darwin", "x86_64", Asset("cloudflared-darwin-amd64.tgz", TGZ, True)),
    ("Darwin", "arm64", Asset("cloudflared-darwin-arm64.tgz", TGZ, True)),
])
def test_the_asset_for_each_os_and_cpu(system: str, machine: str, asset: Asset):
    assert asset_for(system, machine) == asset


@pytest.mark.parametrize("system, machine", [
    ("FreeBSD", "amd64"), ("Linux", "riscv64"), ("Linux", "s390x"), ("Linux", "ppc64le"), ("Darwin", "i386"),
    ("Windows", "armv7l"), ("", ""), ("Linux", "aarch64_be"),
])
def test_no_asset_is_said_in_words(system: str, machine: str):
    with pytest.raises(ReleaseError) as err:
        asset_for(system, machine)
    assert "Cloudflare publishes no cloudflared for this computer" in str(err.value)
    assert "set tunnel.cloudflared in gateway.toml" in str(err.value)


BODY = """## 2026.9.0
- Fix something.

### SHA256 Checksums:
```
cloudflared-darwin-amd64.tgz: 9C2A000000000000000000000000000000000000000000000000000000000001
cloudflared-linux-amd64: 2becd546616fda7adf8c3153306b58067751e09a3b5f8223bcd6c9b21e57c43a
cloudflared-windows-amd64.exe: f096265ec2fcbe9bb6e2d64268db167ced3fcbb83d894bdb9e2fcdb26f2ea7e2
cloudflared-windows-amd64.msi: notahash
```"""


def test_checksums_are_read_from_the_notes():
    got = checksums(BODY)
    assert got == {"cloudflared-darwin-amd64.tgz": "9c2a" + "0" * 59 + "1",
                   "cloudflared-linux-amd64": "2becd546616fda7adf8c3153306b58067751e09a3b5f8223bcd6c9b21e57c43a",
                   "cloudflared-windows-amd64.exe": "f096265ec2fcbe9bb6e2d64268db167ced3fcbb83d894bdb9e2fcdb26f2ea7e2"}


def _answer(**asset: object) -> dict[str, object]:
    return {"tag_name": "2026.9.0", "body": BODY, "assets": [
        {"name": "cloudflared-windows-amd64.exe", "size": 1234, "digest": "sha256:" + "ab" * 32,
         "browser_download_url": "https://github.com/cloudflare/cloudflared/releases/download/2026.9.0/"
                                 "cloudflared-windows-amd64.exe", **asset}]}


def test_pick_takes_the_published_checksum_and_githubs_digest():
    release = pick(_answer(), asset_for("Windows", "AMD64"))
    assert release.version == "2026.9.0" and release.size == 1234
    assert release.sha256 == "f096265ec2fcbe9bb6e2d64268db167ced3fcbb83d894bdb9e2fcdb26f2ea7e2"
    assert release.digest == "ab" * 32 and release.url.endswith("/2026.9.0/cloudflared-windows-amd64.exe")
    assert pick(_answer(digest=None), asset_for("Windows", "AMD64")).digest is None


def test_pick_refuses_what_cannot_be_checked():
    with pytest.raises(ReleaseError, match="has no cloudflared-windows-386.exe to download"):
        pick(_answer(), asset_for("Windows", "x86"))
    answer = _answer()
    answer["body"] = "no checksums here"
    with pytest.raises(ReleaseError, match="published no SHA256 checksum for cloudflared-windows-amd64.exe"):
        pick(answer, asset_for("Windows", "AMD64"))
    with pytest.raises(ReleaseError, match="could not be read"):
        pick({"message": "API rate limit exceeded"}, asset_for("Windows", "AMD64"))


def test_versions():
    assert version_key("2026.10.0") > version_key("2026.9.3") > version_key("2026.9.0")
    assert newer("2026.9.0", "2026.8.2") and not newer("2026.8.2", "2026.8.2") and newer("2026.1.0", None)
    assert version_of("cloudflared version 2026.8.2 (built 2026-08-20-1200 UTC)") == "2026.8.2"
    assert version_of("garbage") is None
