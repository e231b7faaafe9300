"""Play a gateway that dies: start LOG ARGV... with Child.spawn, print the child's
{"pid", "create_time", "start_mark"} as JSON, then os._exit(9) without stopping it."""

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.engine.children import Child  # noqa: E402


async def main() -> None:
    child = await Child.spawn(sys.argv[2:], env=dict(os.environ), log_path=Path(sys.argv[1]))
    print(json.dumps({"pid": child.pid, "create_time": child.create_time, "start_mark": child.start_mark}), flush=True)
    os._exit(9)


asyncio.run(main())
