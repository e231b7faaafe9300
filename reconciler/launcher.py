"""What a double-click does: the Windows zip's "Start omen-gateway" and "Stop omen-gateway"
(packaging/windows/launcher.c runs `python -m reconciler.launcher start|stop`), for an owner
with no terminal. Nothing here is Windows-only: it is tested on Linux as well.

- start: if a gateway already runs on this data folder, say so and open its page. Else start
  `gateway run` in the background (no window; it outlives the launcher), wait until its page
  answers and open it (the first time: the setup screen). A gateway that exits while starting is
  said in words, with the last lines it printed.
- stop: `gateway shutdown`, then wait until it has stopped.

The data folder is `gateway run`'s (GATEWAY_HOME, else the user's data folder); the servers'
folder GATEWAY_CONFIG, else `omen-gateway/gateway.d` in the user's home folder, made the first
time (kept across upgrades of the zip, easy to find, and not in a synced Documents folder).
What the launcher says goes to `launcher.log` in the data folder, to its output, and on Windows
to a message box that closes by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import webbrowser
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from reconciler.client import ApiError, Client, NotRunning
from reconciler.host.instance import holder, page_url, wait_stopped
from reconciler.platform import console_python, current
from reconciler.settings import default_data_dir

START_WAIT = 180.0  # seconds for a first start (the embedded PostgreSQL's first initdb, a slow disk)
STOP_WAIT = 120.0  # every server's stop timeout fits
OUTPUT = "gateway-output.log"  # what `gateway run` prints, when started by the launcher
FOLDER_NOTE = """This folder holds your servers: one .toml file each.
omen-gateway's page adds and edits them for you; you can also edit them here (or keep the
folder in git). A file that has a mistake never stops what is running.
"""


def config_dir() -> Path:
    return Path(os.environ.get("GATEWAY_CONFIG") or Path.home() / "omen-gateway" / "gateway.d")


class Launcher:
    def __init__(self, data_dir: Path, servers: Path, say: Callable[[str], None],
                 open_page: Callable[[str], object] = webbrowser.open) -> None:
        self.data_dir, self.servers, self.say, self.open_page = data_dir, servers, say, open_page

    def start(self) -> int:
        if holder(self.data_dir) is not None:
            url = self._wait_for_page(None)
            if url is None:
                self.say("omen-gateway is already running, but its page does not answer yet. "
                         f"Try again in a minute; what it says is in {self.data_dir / 'gateway.log'}.")
                return 1
            self.open_page(url + "/")  # first: a message box waits until it is closed
            self.say("omen-gateway is already running. Its page is open in your browser.")
            return 0
        if not self.servers.is_dir():
            self.servers.mkdir(parents=True)
            (self.servers / "README.txt").write_text(FOLDER_NOTE, encoding="utf-8")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "gateway.url").unlink(missing_ok=True)  # the new gateway writes it once it answers
        argv = [console_python(), "-m", "reconciler", "run", "--config", str(self.servers),
                "--data-dir", str(self.data_dir), "--no-browser"]
        platform = current()
        with platform.open_log(self.data_dir / OUTPUT) as out:
            out.write(f"--- launcher: starting the gateway at {_now()} ---\n".encode())
            out.flush()
            # its own session / hidden console: it outlives the launcher and has no window
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                    cwd=str(self.data_dir), **platform.spawn_kwargs())
        url = self._wait_for_page(proc)
        if url is None:
            if proc.poll() is None:
                self.say(f"omen-gateway is still starting after {START_WAIT:.0f} s. Its page opens when you "
                         f"start it again; what it says is in {self.data_dir / 'gateway.log'}.")
            else:
                self.say(f"omen-gateway could not start.\n\n{self._last_lines()}")
            return 1
        self.open_page(url + "/")
        return 0

    def stop(self) -> int:
        if holder(self.data_dir) is None:
            self.say("omen-gateway is not running.")
            return 0
        if self._wait_for_page(None) is None:
            self.say("omen-gateway is starting; try again in a minute.")
            return 1
        try:
            Client(self.data_dir).shutdown()
        except (NotRunning, ApiError) as exc:
            self.say(f"omen-gateway did not answer: {exc}")
            return 1
        if not wait_stopped(self.data_dir, STOP_WAIT):
            self.say(f"omen-gateway is still stopping after {STOP_WAIT:.0f} s; "
                     f"what it says is in {self.data_dir / 'gateway.log'}.")
            return 1
        self.say("omen-gateway has stopped, and your servers with it.")
        return 0

    def _wait_for_page(self, proc: subprocess.Popen[bytes] | None) -> str | None:
        """The page's address once the gateway answers (its URL file is written then); None if
        `proc` exits first, or after START_WAIT."""
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            url = page_url(self.data_dir)
            if url is not None:
                return url
            if proc is not None and proc.poll() is not None:
                return None
            if proc is None and holder(self.data_dir) is None:
                return None  # the running one stopped meanwhile
            time.sleep(0.1)
        return None

    def _last_lines(self, count: int = 8) -> str:
        try:
            lines = (self.data_dir / OUTPUT).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(it printed nothing)"
        said = [line for line in lines if not line.startswith("--- launcher:")][-count:]
        return "\n".join(said) or "(it printed nothing)"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    verb = argv[0] if argv else "start"
    if verb not in ("start", "stop"):
        print("usage: python -m reconciler.launcher start|stop", file=sys.stderr)
        return 2
    data_dir = default_data_dir(None)
    data_dir.mkdir(parents=True, exist_ok=True)

    def say(text: str) -> None:
        print(text, flush=True)
        with open(data_dir / "launcher.log", "a", encoding="utf-8") as log:
            log.write(f"{_now()} {verb}: {text}\n")
        current().show_message("omen-gateway", text)

    launcher = Launcher(data_dir, config_dir(), say)
    return launcher.start() if verb == "start" else launcher.stop()


if __name__ == "__main__":  # pragma: no cover - the zip's launcher runs it
    sys.exit(main())
