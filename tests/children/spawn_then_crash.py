"""A stand-in for a gateway that dies of a bug: spawns a server through `Child.spawn` (as
the gateway does), prints its pid, then ends in the way argv[2] names while the child
runs: "exception" (an unhandled exception inside asyncio.run), "exit" (the loop returns
and the process exits 0, a clean exit with --keep-servers), "task" (a task fails, and the
loop is torn down with it pending). The child must outlive every one of them."""

import asyncio
import sys
from pathlib import Path

from reconciler.engine.children import Child

LOG = Path(sys.argv[1])
HOW = sys.argv[2]


async def main() -> None:
    child = await Child.spawn([sys.executable, "-c", "import time; time.sleep(120)"], log_path=LOG)
    print(child.pid, flush=True)
    waiter = asyncio.ensure_future(child.wait())  # as the gateway's exit watch does
    await asyncio.sleep(0.1)
    if HOW == "exception":
        raise RuntimeError("a bug in the gateway")
    if HOW == "task":
        async def fail() -> None:
            raise RuntimeError("a bug in a task")
        await asyncio.gather(fail(), waiter)
    del child, waiter


asyncio.run(main())
