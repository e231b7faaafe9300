"""Ignore SIGTERM (and SIGBREAK/SIGINT where they exist), say so, then sleep for a long time."""

import os
import signal
import time

for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
    if hasattr(signal, name):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
print(f"ignore_sigterm: pid {os.getpid()} ignoring SIGTERM", flush=True)
time.sleep(600)
