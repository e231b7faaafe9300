"""Print a line, sleep SECONDS (argv[2], default 0), exit with CODE (argv[1])."""

import sys
import time

code = int(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
print(f"crash_after: exiting with {code} in {seconds}s", flush=True)
time.sleep(seconds)
sys.exit(code)
