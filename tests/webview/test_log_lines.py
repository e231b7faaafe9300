"""A failed sign-in's user name cannot forge lines in gateway.log (issue 25, item 9): what a
stranger types travels into the history and the log quoted, one record one line."""

from __future__ import annotations

import httpx

from tests.fix_gateway import Gateway
from tests.webview.conftest import PASSWORD, USER, cli, url_of
from tests.webview.test_doors import SAME

FORGED = "2026-01-01 00:00:00,000 WARNING gateway: the owner signed in (forged)"


def test_a_user_name_with_line_breaks_stays_on_one_line(gateway: Gateway) -> None:
    gateway.start()
    assert cli(gateway, "user", "add", USER, "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    name = f"mallory\r\n{FORGED}\r\n"
    with httpx.Client(base_url=url_of(gateway), trust_env=False, headers=SAME) as http:
        codes = [http.post("/login", data={"username": name, "password": "wrong"}).status_code for _ in range(11)]
    assert codes[-1] == 429 and set(codes[:5]) == {401}, codes
    locked = [e for e in gateway.events() if e["kind"] == "sign_in_locked"]
    assert locked and "\n" not in locked[-1]["reason"] and "\r" not in locked[-1]["reason"]
    # a typed name is taken as a name is (its line breaks and runs of spaces are one space), then quoted
    assert f"'mallory {FORGED}'" in locked[-1]["reason"]
    gateway.stop()
    log = (gateway.data_dir / "gateway.log").read_text(encoding="utf-8")
    assert f"'mallory {FORGED}'" in log
    lines = log.splitlines()
    assert not [line for line in lines if line.startswith("2026-01-01 00:00:00,000")], lines[-10:]
    assert all("\r" not in line for line in log.split("\n"))


def test_every_record_of_gateway_log_is_one_line(tmp_path) -> None:
    """Whatever a message holds (a reason quoting a file, an error from a program), its line
    breaks are escaped; a traceback keeps its lines."""
    import logging

    from reconciler.cli import _setup_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    writer = _setup_logging(tmp_path / "gateway.log", verbose=False)
    try:
        logging.getLogger("gateway").warning("a reason %s", f"x\r\n{FORGED}\u2028y")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("gateway").exception("failed")
    finally:
        writer.stop()
        for written in writer.handlers:
            written.close()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    lines = (tmp_path / "gateway.log").read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith(f"WARNING a reason x\\r\\n{FORGED}\\u2028y")
    assert lines[1].endswith("ERROR failed") and lines[2] == "Traceback (most recent call last):"
    assert not [line for line in lines if line.startswith("2026-01-01")]
