"""What a Cloudflare API client costs a fresh interpreter: the official `cloudflare` SDK
(the four resources the gateway would use touched) against httpx (what
reconciler/tunnel/cfapi.py uses), as import time (ms, median of N runs) and peak RSS (MB,
/usr/bin/time -v "Maximum resident set size").

    python bench/cloudflare_client.py [--python PATH] [--runs 5]

PATH is an interpreter that has both installed (the project does not depend on the SDK; a
scratch venv: `python -m venv /tmp/cfsdk && /tmp/cfsdk/bin/pip install cloudflare`).
Measured 2026-12-01 on the 2-core dev machine (shared, so noisy): bare Python 8.6 MB;
httpx 0.26-0.35 s, 26 MB; SDK with 4 resources 2.0-5.2 s, 91-93 MB (import alone 0.3-0.9 s, 41-42 MB).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys

CASES = {
    "bare python": "pass",
    "httpx (cfapi)": "import httpx; httpx.AsyncClient()",
    "cloudflare SDK, import": "import cloudflare; cloudflare.Cloudflare(api_token='x')",
    "cloudflare SDK, 4 resources": ("import cloudflare; c = cloudflare.Cloudflare(api_token='x'); c.zones.list; "
                                    "c.dns.records.create; c.zero_trust.tunnels.cloudflared.create; "
                                    "c.alerting.policies.create"),
}


def once(python: str, code: str) -> tuple[float, float]:
    timed = f"import time; t = time.perf_counter(); {code}; print((time.perf_counter() - t) * 1000)"
    done = subprocess.run(["/usr/bin/time", "-v", python, "-c", timed], capture_output=True, text=True, check=True)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return float(done.stdout.strip()), int(rss.group(1)) / 1024 if rss else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"{'client':<30} {'import ms (median)':>18} {'peak RSS MB':>12}")
    for name, code in CASES.items():
        try:
            runs = [once(args.python, code) for _ in range(args.runs)]
        except subprocess.CalledProcessError:
            print(f"{name:<30} {'not installed':>18}")
            continue
        print(f"{name:<30} {statistics.median(r[0] for r in runs):>18.0f} {max(r[1] for r in runs):>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
