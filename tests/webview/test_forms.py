"""Add / edit / delete servers through the page's forms: TOML written atomically, unknown keys
kept, field errors shown, the watcher applies the change and real processes follow."""

from __future__ import annotations

import socket
import tomllib

import httpx

from tests.fix_gateway import Gateway

FORM = {"description": "", "cwd": "", "env": "", "group": "", "tags": "", "health_type": "", "health_path": "",
        "health_command": "", "domain": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(http: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return http.post(path, data={**FORM, "csrf": http.csrf, **fields})  # type: ignore[attr-defined]


def test_add_edit_delete_a_server(web: Gateway, http: httpx.Client) -> None:
    port = free_port()
    r = post(http, "/new", name="gamma", command="python -m http.server {port} --bind 127.0.0.1", port=str(port),
             env="GREETING=hi there\nMODE=test", tags="x, y", health_type="http", health_path="/",
             description="made on the page")
    assert r.status_code == 303 and r.headers["location"] == "/servers/gamma", r.text
    data = tomllib.loads((web.config_dir / "gamma.toml").read_text())
    assert data == {"command": ["python", "-m", "http.server", "{port}", "--bind", "127.0.0.1"], "port": port,
                    "description": "made on the page", "env": {"GREETING": "hi there", "MODE": "test"},
                    "tags": ["x", "y"], "health": {"type": "http", "path": "/"}}
    assert not list(web.config_dir.glob(".*"))  # no temp file left
    first = web.wait_phase("gamma", "running")
    assert first["port"] == port

    # a key the form does not know survives an edit; the port change restarts the process
    path = web.config_dir / "gamma.toml"
    path.write_text(path.read_text() + '\n[restart]\npolicy = "on-failure"\n')
    web.wait_for(lambda s: s["gamma"]["phase"] == "running")
    form = http.get("/servers/gamma/edit")
    assert form.status_code == 200 and f'value="{port}"' in form.text
    port2 = free_port()
    r = post(http, "/servers/gamma/edit", command="python -m http.server {port} --bind 127.0.0.1", port=str(port2),
             description="moved", health_type="http", health_path="/")
    assert r.status_code == 303, r.text
    data = tomllib.loads(path.read_text())
    assert data["restart"] == {"policy": "on-failure"} and data["port"] == port2 and "env" not in data
    web.wait_for(lambda s: s["gamma"]["port"] == port2 and s["gamma"]["phase"] == "running", what="gamma moved")

    confirm = http.get("/servers/gamma/delete")
    assert confirm.status_code == 200 and "Yes, delete gamma" in confirm.text
    r = http.post("/servers/gamma/delete", data={"csrf": http.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 303 and not path.exists()
    web.wait_for(lambda s: "gamma" not in s, what="gamma gone")
    assert any(e["kind"] == "config_written" and e["actor"] == "operator:web:ada" for e in web.events("gamma"))


def test_field_errors_and_nothing_written(web: Gateway, http: httpx.Client) -> None:
    before = sorted(p.name for p in web.config_dir.iterdir())
    r = post(http, "/new", name="Bad Name", command="x", port="auto")
    assert r.status_code == 422 and "lowercase letters" in r.text
    r = post(http, "/new", name="delta", command="python x.py", port="70000")
    assert r.status_code == 422 and 'id="err-port"' in r.text and "70000 is not a port" in r.text
    r = post(http, "/new", name="delta", command="", port="auto")
    assert r.status_code == 422 and 'id="err-command"' in r.text
    r = post(http, "/new", name="delta", command="python 'unclosed", port="auto")
    assert r.status_code == 422 and "cannot split the command" in r.text
    r = post(http, "/new", name="delta", command="python x.py", port="auto", env="NOEQUALS")
    assert r.status_code == 422 and "KEY=value" in r.text
    r = post(http, "/new", name="alpha", command="python x.py", port="auto")
    assert r.status_code == 422 and "already a server named alpha" in r.text
    r = post(http, "/new", name="..", command="python x.py", port="auto")
    assert r.status_code == 422
    r = post(http, "/new", name="delta", command="python x.py", port="auto", health_type="http", health_path="nope")
    assert r.status_code == 422 and 'id="err-health_path"' in r.text
    assert sorted(p.name for p in web.config_dir.iterdir()) == before


def test_check_port(web: Gateway, http: httpx.Client) -> None:
    alpha = web.status()["alpha"]
    r = http.get("/check-port", params={"port": alpha["port"], "name": "alpha"})
    assert r.json()["message"] == f"Port {alpha['port']} is held by alpha itself (pid {alpha['pid']})."
    r = http.get("/check-port", params={"port": alpha["port"], "name": "other"})
    assert f"in use by pid {alpha['pid']}" in r.json()["message"]
    port = free_port()
    assert http.get("/check-port", params={"port": port}).json() == {"message": f"Port {port} is free.", "free": True}
    # without JavaScript: the form's own button answers in the re-rendered form
    r = post(http, "/new", name="eps", command="x", port=str(alpha["port"]), action="check-port")
    assert r.status_code == 200 and f"in use by pid {alpha['pid']}" in r.text
    assert not (web.config_dir / "eps.toml").exists()
