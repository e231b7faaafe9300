"""A stubborn process tree: this process and two grandchildren all ignore SIGTERM; one
grandchild stays in our process group, the other calls setsid to escape it.

Writes {"parent": pid, "grandchild": pid, "escaped": pid} as JSON to PIDFILE (argv[1]),
atomically, once both grandchildren run; then sleeps."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

signal.signal(signal.SIGTERM, signal.SIG_IGN)
pidfile = Path(sys.argv[1])
ignore = [sys.executable, str(HERE / "ignore_sigterm.py")]
stay = subprocess.Popen(ignore)
escape = subprocess.Popen(ignore, start_new_session=True)  # setsid(): a new session and group
time.sleep(0.2)  # let both install their SIGTERM handlers before the test may signal them
tmp = pidfile.with_suffix(".tmp")
tmp.write_text(json.dumps({"parent": os.getpid(), "grandchild": stay.pid, "escaped": escape.pid}))
os.replace(tmp, pidfile)
print(f"spawn_grandchild: {pidfile.read_text()}", flush=True)
time.sleep(600)
