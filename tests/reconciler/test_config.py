"""The loader: good files, bad files with their exact messages, last-good, clashes."""

from __future__ import annotations

import os
import time
import tomllib
from pathlib import Path

import pytest

from reconciler.core.spec import ServerSpec
from reconciler.engine import config
from reconciler.engine.config import ConfigError, find_cycles, is_server_file, load_dir, load_file, spec_to_toml

CMD = 'command = ["python", "-m", "http.server", "{port}"]\n'


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def messages(result_errors) -> list[str]:
    return [str(e) for e in result_errors]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CMD + "port = 70000\n", "{f}:2: port: 70000 is not a port (1-65535)"),
        (CMD + 'port = "8080"\n', "{f}:2: port: '8080' is not a port: use a number 1-65535 or \"auto\""),
        ('command = ["x"\nport = 1\n', "{f}:2:1: TOML syntax: Unclosed array"),
        ('comand = ["x"]\n', "{f}: command: is required"),
        ('command = "x"\ncomand = "y"\n', "{f}:2: comand: unknown key; did you mean 'command'?"),
        ('command = "x"\n[health]\ntype = "http"\npath = "nope"\n', "{f}:4: health.path: 'nope' must start with '/'"),
        ('command = "x"\n[health]\ntype = "tcp"\ninterval = 5\n',
         '{f}:4: health.interval: 5 is not a duration: write it with a unit, like "500ms", "10s" or "5m"'),
        ('command = "x"\n[health]\ntype = "tcp"\ninteval = "5s"\n',
         "{f}:4: health.inteval: unknown key; did you mean 'interval'?"),
        ('command = "x"\n[restart]\npolicy = "sometimes"\n',
         "{f}:3: restart.policy: Input should be 'always', 'on-failure' or 'never'"),
        ('command = "x"\nenv = { A = true }\n', "{f}:2: env: A = True: must be a string or a number"),
        ('command = "x"\n[stop]\ntimeout = "ten seconds"\n',
         "{f}:3: stop.timeout: 'ten seconds' is not a duration: write it with a unit, like \"500ms\", \"10s\" or \"5m\""),
        ('name = "other"\ncommand = "x"\n',
         "{f}:1: name: 'other' differs from the file name; the name of a server is its file name (web), "
         "so remove this key or rename the file"),
        ('command = "x"\ndepends_on = ["web"]\n', "{f}: depends_on: web cannot depend on itself"),
        ('command = "x \'unclosed"\n', "{f}:1: command: cannot split the command: No closing quotation"),
        ('command = "x"\n[health]\ntype = "running"\nmin_uptime = "0s"\n',
         '{f}:4: health.min_uptime: 0ms cannot be a min_uptime: use more than 0 and at most 1h, like "5s"'),
        ('command = "x"\n[health]\ntype = "running"\ninterval = "5s"\n',
         '{f}:4: health.interval: a "running" check has no interval (its settings: min_uptime, needs_internet)'),
        ('command = "x"\n[health]\ntype = "tcp"\nmin_uptime = "5s"\n',
         '{f}:4: health.min_uptime: a "tcp" check has no min_uptime (its settings: interval, timeout, failures, '
         'start_period, needs_internet)'),
    ],
)
def test_bad_file_messages(tmp_path: Path, text: str, expected: str):
    path = write(tmp_path, "web.toml", text)
    result = load_file(path)
    assert isinstance(result, list)
    assert expected.format(f=path) in messages(result)


def test_good_file_defaults_and_bom(tmp_path: Path):
    path = write(tmp_path, "web.toml", b"\xef\xbb\xbf" + CMD.encode() + b'port = "auto"\n')
    spec = load_file(path)
    assert isinstance(spec, ServerSpec)
    assert spec.name == "web" and spec.port == "auto" and spec.stop.timeout == 10.0
    assert spec.effective_health().type == "tcp"
    assert spec.restart.policy == "always" and spec.enabled


def test_invalid_file_name_is_an_error(tmp_path: Path):
    path = write(tmp_path, "My Blog.toml", CMD)
    result = load_dir(tmp_path)
    assert not result.specs
    assert messages(result.errors) == [
        f"{path}: 'My Blog' is not a valid server name (the file name is the name): use 1-63 lowercase "
        "letters, digits and '-', starting with a letter or digit"]


@pytest.mark.parametrize(
    ("name", "counted"),
    [("web.toml", True), ("gateway.toml", False), (".web.toml", False), ("_draft.toml", False),
     ("web.toml~", False), ("web.toml.tmp", False), ("web.toml.swp", False), ("web.txt", False)],
)
def test_which_files_are_servers(name: str, counted: bool):
    assert is_server_file(Path(name)) is counted


def test_last_good_version_stays_in_force(tmp_path: Path):
    write(tmp_path, "web.toml", CMD + "port = 8080\n")
    first = load_dir(tmp_path)
    assert first.specs["web"].port == 8080 and not first.errors
    write(tmp_path, "web.toml", CMD + "port = 70000\n")
    second = load_dir(tmp_path, first)
    assert second.specs["web"] == first.specs["web"] and second.stale == {"web"}
    assert messages(second.errors) == [f"{tmp_path / 'web.toml'}:2: port: 70000 is not a port (1-65535)"]
    # a broken file that never had a good version is simply not there
    write(tmp_path, "new.toml", "")
    third = load_dir(tmp_path, second)
    assert "new" not in third.specs and f"{tmp_path / 'new.toml'}: command: is required" in messages(third.errors)
    # fixing it clears the error and the stale mark
    write(tmp_path, "web.toml", CMD + "port = 8081\n")
    fourth = load_dir(tmp_path, third)
    assert fourth.specs["web"].port == 8081 and "web" not in fourth.stale


def test_unchanged_bytes_are_not_parsed_again(tmp_path: Path):
    write(tmp_path, "web.toml", 'command = ["x"]\nport = 8080\n')
    write(tmp_path, "bad.toml", "port = \n")
    first = load_dir(tmp_path)
    second = load_dir(tmp_path, first)
    assert second.specs["web"] is first.specs["web"]  # the same object: not validated again
    assert [str(e) for e in second.errors] == [str(e) for e in first.errors]
    write(tmp_path, "web.toml", 'command = ["x"]\nport = 8081\n')  # same length, other bytes
    third = load_dir(tmp_path, second)
    assert third.specs["web"] is not second.specs["web"] and third.specs["web"].port == 8081


def test_a_settled_untouched_file_is_not_read_again_and_any_write_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The resync looks at 100 files every 30 s: one that was quiet for SETTLED seconds before
    it was read, and has the same inode, size and times now, is not read again. Writes are
    seen: in place (same size), by rename, and right after the read (times too coarse)."""
    path = write(tmp_path, "web.toml", 'command = ["x"]\nport = 8080\n')
    reads: list[Path] = []
    real_read = config.read_regular
    monkeypatch.setattr(config, "read_regular", lambda path: reads.append(path) or real_read(path))
    first = load_dir(tmp_path)
    load_dir(tmp_path, first)
    assert len(reads) == 2  # just written: not settled, read each time
    later = time.time() + config.SETTLED + 1
    monkeypatch.setattr(config.time, "time", lambda: later)  # as if read a few seconds later
    settled = load_dir(tmp_path, first)
    again = load_dir(tmp_path, settled)
    assert len(reads) == 3 and again.specs["web"] is settled.specs["web"]  # not read the second time
    path.write_text('command = ["x"]\nport = 8081\n')  # in place, same size: the times move
    os.utime(path, ns=(path.stat().st_atime_ns, settled.parsed[str(path)][0][2]))  # even the mtime put back
    assert load_dir(tmp_path, again).specs["web"].port == 8081  # the ctime moved
    monkeypatch.undo()
    fresh = load_dir(tmp_path)
    tmp = tmp_path / "web.tmp"
    tmp.write_text('command = ["x"]\nport = 8082\n')
    tmp.replace(path)  # an atomic save: a new inode
    assert load_dir(tmp_path, fresh).specs["web"].port == 8082


def test_deleted_file_is_forgotten_even_with_a_previous_version(tmp_path: Path):
    path = write(tmp_path, "web.toml", CMD)
    first = load_dir(tmp_path)
    path.unlink()
    assert load_dir(tmp_path, first).specs == {}


def test_same_fixed_port_the_holder_keeps_it(tmp_path: Path):
    write(tmp_path, "zeta.toml", CMD + "port = 9000\n")
    first = load_dir(tmp_path)
    write(tmp_path, "alpha.toml", CMD + "port = 9000\n")
    second = load_dir(tmp_path, first)
    # zeta held it first, although alpha sorts before it
    assert set(second.specs) == {"zeta"}
    assert messages(second.errors) == [
        f"{tmp_path / 'alpha.toml'}:2: port: 9000 is already used by zeta ({tmp_path / 'zeta.toml'}); "
        'pick another port or "auto"']


def test_same_fixed_port_on_a_fresh_start_goes_to_the_first_name(tmp_path: Path):
    write(tmp_path, "b.toml", CMD + "port = 9000\n")
    write(tmp_path, "a.toml", CMD + "port = 9000\n")
    result = load_dir(tmp_path)
    assert set(result.specs) == {"a"} and "already used by a" in messages(result.errors)[0]


def test_port_clash_from_an_edit_keeps_the_old_port(tmp_path: Path):
    write(tmp_path, "a.toml", CMD + "port = 9000\n")
    write(tmp_path, "b.toml", CMD + "port = 9001\n")
    first = load_dir(tmp_path)
    write(tmp_path, "b.toml", CMD + "port = 9000\n")
    second = load_dir(tmp_path, first)
    assert second.specs["b"].port == 9001 and second.stale == {"b"}


def test_disabled_servers_do_not_clash(tmp_path: Path):
    write(tmp_path, "a.toml", CMD + "port = 9000\n")
    write(tmp_path, "b.toml", CMD + "port = 9000\nenabled = false\n")
    assert not load_dir(tmp_path).errors


def test_unknown_dependency_and_cycle(tmp_path: Path):
    write(tmp_path, "app.toml", CMD + 'depends_on = ["db"]\n')
    write(tmp_path, "x.toml", CMD + 'depends_on = ["y"]\n')
    write(tmp_path, "y.toml", CMD + 'depends_on = ["x"]\n')
    result = load_dir(tmp_path)
    assert result.specs == {}
    assert messages(result.errors) == [
        f"{tmp_path / 'app.toml'}:2: depends_on: unknown server 'db' (known: x, y)",
        f"{tmp_path / 'x.toml'}:2: depends_on: dependency cycle x -> y -> x",
        f"{tmp_path / 'y.toml'}:2: depends_on: dependency cycle x -> y -> x",
    ]


def test_dependent_of_a_broken_server_says_why(tmp_path: Path):
    write(tmp_path, "db.toml", CMD + "port = 0\n")
    write(tmp_path, "app.toml", CMD + 'depends_on = ["db"]\n')
    result = load_dir(tmp_path)
    assert result.specs == {}
    assert (f"{tmp_path / 'app.toml'}:2: depends_on: 'db' is left out because of its own errors, so this server "
            "cannot start either") in messages(result.errors)


def test_find_cycles_reports_each_once():
    assert find_cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert find_cycles({"a": ["b"], "b": []}) == []


def test_gateway_file_errors_keep_previous_settings(tmp_path: Path):
    write(tmp_path, "gateway.toml", '[ports]\nrange = "30000-30010"\n')
    first = load_dir(tmp_path)
    assert first.settings.ports.range == (30000, 30010)
    write(tmp_path, "gateway.toml", '[ports]\nrange = "lots"\n')
    second = load_dir(tmp_path, first)
    assert second.settings.ports.range == (30000, 30010)
    assert messages(second.errors) == [
        f"{tmp_path / 'gateway.toml'}:2: ports.range: 'lots' is not a port range: write it like \"20000-29999\""]
    write(tmp_path, "gateway.toml", "[web]\nlisen = '1'\n")
    third = load_dir(tmp_path, second)
    assert messages(third.errors) == [f"{tmp_path / 'gateway.toml'}:2: web.lisen: unknown key; did you mean 'listen'?"]


def test_config_error_text_is_compiler_style():
    assert str(ConfigError("g/a.toml", 3, 7, "port", "bad")) == "g/a.toml:3:7: port: bad"
    assert str(ConfigError("g/a.toml", None, None, None, "bad")) == "g/a.toml: bad"


def test_spec_to_toml_round_trips(tmp_path: Path):
    text = (CMD + 'port = "auto"\ndescription = "d"\ntags = ["a"]\n[health]\ntype = "http"\npath = "/h"\n'
            'interval = "500ms"\n[stop]\ntimeout = "3s"\n')
    spec = load_file(write(tmp_path, "web.toml", text))
    assert isinstance(spec, ServerSpec)
    written = spec_to_toml(spec)
    data = tomllib.loads(written)
    assert "name" not in data and data["health"] == {"type": "http", "path": "/h", "interval": "500ms"}
    assert data["stop"] == {"timeout": "3s"}
    again = load_file(write(tmp_path, "web.toml", written))
    assert again == spec


def test_a_program_without_a_web_page_is_healthy_once_it_kept_running(tmp_path: Path):
    text = 'command = "python bot.py"\n[health]\ntype = "running"\nmin_uptime = "8s"\n'
    spec = load_file(write(tmp_path, "bot.toml", text))
    assert isinstance(spec, ServerSpec)
    health = spec.effective_health()
    assert spec.port is None and health.type == "running" and health.min_uptime == 8.0
    assert health.start_period > health.min_uptime  # the start is given up on only after it could pass
    assert tomllib.loads(spec_to_toml(spec))["health"] == {"type": "running", "min_uptime": "8s"}
    default = load_file(write(tmp_path, "bot.toml", 'command = "python bot.py"\n[health]\ntype = "running"\n'))
    assert isinstance(default, ServerSpec) and default.effective_health().min_uptime == 5.0


def test_example_folder_is_valid():
    folder = Path(__file__).resolve().parents[2] / "gateway.d"
    result = load_dir(folder)
    assert not result.errors, messages(result.errors)
    assert {"hello", "api"} <= set(result.specs)


def test_windows_paths_in_double_quotes_get_a_hint(tmp_path: Path):
    bad = write(tmp_path, "web.toml", 'command = ["x"]\ncwd = "C:\\Users\\me\\app"\n')
    (err,) = load_file(bad)  # type: ignore[misc]
    assert "Invalid hex value" in err.message and "'single quotes'" in err.message and err.line == 2
    # "\n", "\t", "\f", "\b" are valid escapes: the path silently held a line break before
    quiet = write(tmp_path, "api.toml", 'command = ["x"]\ncwd = "C:\\new\\folder"\n')
    (err,) = load_file(quiet)  # type: ignore[misc]
    assert err.key == "cwd" and "line break or tab" in err.message and err.line == 2
    ok = write(tmp_path, "bot.toml", "command = ['x']\ncwd = 'C:\\Users\\me\\app'\n")
    spec = load_file(ok)
    assert not isinstance(spec, list) and spec.cwd == "C:\\Users\\me\\app"
