"""A file saved again while its server waits: the backoff is over (a changed check counts too,
not only a changed command), and a change that was rolled back is no longer "not applied" once
another version (reverted or fixed) is saved, also read back after a gateway restart. The real
loader on real files; no processes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reconciler.core.reasons import Reason
from reconciler.core.state import Phase
from reconciler.engine.loop import Reconciler
from reconciler.engine.runtime import Runtime

CMD = 'command = ["python", "-c", "import time; time.sleep(60)"]\n'


def reconciler(tmp_path: Path, text: str) -> tuple[Reconciler, Runtime, list[dict[str, Any]]]:
    folder = tmp_path / "gateway.d"
    folder.mkdir(exist_ok=True)
    (folder / "web.toml").write_text(text, encoding="utf-8")
    ops: list[dict[str, Any]] = []
    rt = Runtime(tmp_path, folder, ops.append)
    return Reconciler(rt, folder), rt, ops


async def test_a_new_version_of_the_file_ends_the_wait(tmp_path: Path) -> None:
    rec, rt, _ = reconciler(tmp_path, CMD + '[health]\ntype = "http"\npath = "/health"\n')
    result = await rec.load_config()
    waiting = time.monotonic() + 226
    rt.states["web"] = rt.state("web").update(phase=Phase.BACKOFF, failures=7, next_try_at=waiting,
                                             spec_hash=result.specs["web"].runtime_hash(), cause=Reason.UNHEALTHY)
    await rec.load_config()  # nothing changed: it keeps waiting
    assert rt.state("web").next_try_at == waiting
    (rec.config_dir / "web.toml").write_text(CMD + '[health]\ntype = "http"\npath = "/healthz"\n', encoding="utf-8")
    await rec.load_config()
    state = rt.state("web")
    assert (state.next_try_at, state.failures, state.cause) == (None, 0, Reason.CHANGE)  # the next pass starts it


async def test_saving_another_version_clears_the_change_that_was_not_applied(tmp_path: Path) -> None:
    rec, rt, ops = reconciler(tmp_path, CMD)
    result = await rec.load_config()
    broken = result.specs["web"].runtime_hash()
    rt.rollouts.failed["web"], rt.rollouts.failed_why["web"] = broken, "the process exited: exited with code 2"
    await rec.load_config()
    assert rt.rollouts.failed == {"web": broken}  # the same version: still not applied
    (rec.config_dir / "web.toml").write_text(CMD.replace("60", "61"), encoding="utf-8")
    await rec.load_config()
    assert rt.rollouts.failed == {} and rt.rollouts.failed_why == {}
    assert {"op": "rollout_clear", "name": "web"} in ops  # PostgreSQL forgets it too
