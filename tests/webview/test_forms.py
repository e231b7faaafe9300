"""Add / edit / delete servers through the page's forms: TOML written atomically, unknown keys
kept, field errors shown, the watcher applies the change and real processes follow."""

from __future__ import annotations

import socket
import tomllib

import httpx

from tests.fix_gateway import Gateway
from tests.wine import NO_OWNER_PID

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


@NO_OWNER_PID
def test_check_port(web: Gateway, http: httpx.Client) -> None:
    alpha = web.status()["alpha"]
    r = http.get("/check-port", params={"port": alpha["port"], "name": "alpha"})
    assert r.json()["message"].startswith(f"Port {alpha['port']} is used by alpha itself")
    r = http.get("/check-port", params={"port": alpha["port"], "name": "other"})
    assert f"used by your server alpha (pid {alpha['pid']})" in r.json()["message"]
    port = free_port()
    assert http.get("/check-port", params={"port": port}).json() == {"message": f"Port {port} is free.", "free": True}
    # without JavaScript: the form's own button answers in the re-rendered form
    r = post(http, "/new", name="eps", command="x", port=str(alpha["port"]), action="check-port")
    pid = alpha["pid"]
    assert r.status_code == 200 and f"used by your server alpha (pid {pid})" in r.text
    assert not (web.config_dir / "eps.toml").exists()


def test_all_errors_at_once_and_the_world_checked(web: Gateway, http: httpx.Client) -> None:
    r = post(http, "/new", name="Bad Name", command="no-such-program-xyz --x", port="70000",
             cwd="no/such/folder", env="NOEQUALS")
    assert r.status_code == 422
    for field in ("name", "port", "cwd", "env"):
        assert f'id="err-{field}"' in r.text, field
    assert "Fix these 4 things" in r.text
    r = post(http, "/new", name="zeta", command="no-such-program-xyz --x", port="auto")
    assert r.status_code == 422 and "no program called no-such-program-xyz was found" in r.text
    r = post(http, "/new", name="zeta", command="./missing.sh", port="auto")
    assert r.status_code == 422 and "./missing.sh does not exist" in r.text
    assert not (web.config_dir / "zeta.toml").exists()


def test_windows_paths_and_the_command_as_typed(web: Gateway, http: httpx.Client, tmp_path) -> None:
    folder = tmp_path / "my site"
    folder.mkdir()
    prog = folder / "serve.py"
    prog.write_text("import http.server, os\nhttp.server.test(port=int(os.environ['PORT']), bind='127.0.0.1')\n")
    typed = f'python "{prog}" --title C:\\Users\\me\\site {{port}}'
    r = post(http, "/new", name="win", command=typed, port="auto", cwd=str(folder), env="ROOT=C:\\Users\\me")
    assert r.status_code == 303, r.text
    path = web.config_dir / "win.toml"
    data = tomllib.loads(path.read_text())  # reads back: no "Invalid hex value"
    assert data["command"] == ["python", str(prog), "--title", "C:\\Users\\me\\site", "{port}"]
    assert data["env"] == {"ROOT": "C:\\Users\\me"} and "'C:\\Users\\me'" in path.read_text()
    form = http.get("/servers/win/edit").text
    assert f'value="python &#34;{prog}&#34; --title C:\\Users\\me\\site {{port}}"' in form  # as typed
    web.wait_phase("win", "running")
    assert post(http, "/servers/win/delete").status_code == 303


def test_edit_keeps_comments(web: Gateway, http: httpx.Client) -> None:
    path = web.write("keep", "# my notes about keep\n" + 'command = ["python", "-m", "http.server", "{port}"]  # serve\n'
                     'port = "auto"\n\n[restart]\n# be patient\npolicy = "always"\n')
    web.wait_for(lambda s: "keep" in s)
    r = post(http, "/servers/keep/edit", command="python -m http.server {port}", port="auto", description="kept")
    assert r.status_code == 303, r.text
    text = path.read_text()
    assert "# my notes about keep" in text and "# serve" in text and "# be patient" in text
    assert tomllib.loads(text)["description"] == "kept"
    assert post(http, "/servers/keep/delete").status_code == 303


def test_reserved_names(web: Gateway, http: httpx.Client) -> None:
    gateway_toml = web.config_dir / "gateway.toml"
    gateway_toml.write_text("# global settings\n" + gateway_toml.read_text())  # its own range kept
    before = gateway_toml.read_text()
    r = http.post("/servers/gateway/delete", data={"csrf": http.csrf})  # type: ignore[attr-defined]
    assert r.status_code == 404 and gateway_toml.read_text() == before
    for name in ("gateway", "cloudflared"):
        r = post(http, "/new", name=name, command="python -m http.server {port}", port="auto")
        assert r.status_code == 422 and "a name the gateway uses for itself" in r.text, name
    assert gateway_toml.read_text() == before and not (web.config_dir / "cloudflared.toml").exists()
    assert http.get("/servers/gateway/edit").status_code == 404


def test_starting_points(web: Gateway, http: httpx.Client) -> None:
    for key, command in (("python", "python app.py"), ("node", "node server.js"),
                         ("static", "python -m http.server {port} --bind 127.0.0.1"),
                         ("windows", "C:\\path\\to\\program.exe"), ("program", "")):
        page = http.get("/new", params={"start": key}).text
        assert f'name="command" value="{command}"' in page, key
        assert "data-start-help" in page


@NO_OWNER_PID
def test_check_port_names_our_servers(web: Gateway, http: httpx.Client) -> None:
    alpha = web.status()["alpha"]
    mine = http.get("/check-port", params={"port": alpha["port"], "name": "alpha"}).json()["message"]
    assert mine == f"Port {alpha['port']} is used by alpha itself (this server, pid {alpha['pid']}): that is fine."
    other = http.get("/check-port", params={"port": alpha["port"], "name": "new-one"}).json()["message"]
    assert f"used by your server alpha (pid {alpha['pid']})" in other


def test_the_check_list_offers_every_kind_the_spec_knows_in_words(web: Gateway, http: httpx.Client) -> None:
    import re
    import typing

    from reconciler.core.spec import HEALTH_KINDS

    page = http.get("/new").text
    select = page[page.index('name="health_type"'):]
    select = select[: select.index("</select>")]
    offered = dict(re.findall(r'<option value="([a-z]*)"[^>]*>([^<]+)</option>', select))
    kinds = {typing.get_args(kind.model_fields["type"].annotation)[0] for kind in HEALTH_KINDS}
    assert offered.keys() == kinds | {""}  # a new kind of check is offered by itself
    assert all(words.strip() and words.strip() not in kinds for words in offered.values())  # words, not keys
