"""The settings forms are made from the schema (webview.settings_form): what a field is, what it
accepts and when it is in force come from the section's pydantic model; the page adds words."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.datastructures import FormData

from reconciler.core.spec import GatewayFile
from reconciler.ops import tomledit
from reconciler.ops.notify import ALL_KINDS, NotifySettings
from webview.settings_form import Setting, SettingsError, SettingsForm
from webview.settings_ops import SCHEDULE
from webview.settings_pages import ALERTS, PORTS


def kinds(form: SettingsForm[Any]) -> dict[str, str]:
    return {s.key: form.kind(s) for s in form.settings}


def test_each_field_is_what_its_schema_says() -> None:
    assert kinds(ALERTS) == {"urls": "lines", "events": "checks"}
    assert kinds(PORTS) == {"range": "text"}
    assert kinds(SCHEDULE) == {"backup_every": "choice", "backup_keep": "number"}
    events = next(s for s in ALERTS.settings if s.key == "events")
    assert [v for v, _ in ALERTS.choices(events)] == list(ALL_KINDS)  # the schema's Literal, in its order
    with pytest.raises(AssertionError, match=r"\[notify\] has no remind_me"):
        SettingsForm("notify", NotifySettings, [Setting("remind_me", "Remind me")])


def test_what_is_sent_becomes_the_change_and_the_schema_checks_it() -> None:
    sent = FormData([("every", ""), ("keep", "3")])
    assert SCHEDULE.changes(sent) == {"sync": {"backup_every": tomledit.DELETE, "backup_keep": 3}}
    for keep in ("", "٨", "2²"):  # not a whole number typed with 0-9
        with pytest.raises(SettingsError, match="Keep: write how many backups to keep"):
            SCHEDULE.changes(FormData([("every", "1d"), ("keep", keep)]))
    with pytest.raises(SettingsError, match="Keep: write how many backups"):  # the schema's ge=1, in the page's words
        SCHEDULE.check({"sync": SCHEDULE.changes(FormData([("every", "1d"), ("keep", "0")]))["sync"]})
    with pytest.raises(SettingsError, match="Choose one of the listed schedules"):
        SCHEDULE.changes(FormData([("every", "2d"), ("keep", "3")]))
    every = [("events", k) for k in ALL_KINDS]
    assert ALERTS.changes(FormData([("urls", " \n"), *every])) == {
        "notify": {"urls": tomledit.DELETE, "events": tomledit.DELETE}}  # nothing and everything: the defaults
    assert ALERTS.changes(FormData([("urls", "json://a\n\n json://b "), ("events", "down"), ("events", "bogus")])) == {
        "notify": {"urls": ["json://a", "json://b"], "events": ["down"]}}


def test_the_port_range_in_the_schemas_words_and_the_pages_own_rule() -> None:
    for typed in ("70000-1", "2²000-29999", "80-90", ""):  # refused by the schema, then by this page (below 1024)
        with pytest.raises(SettingsError, match="Write two port numbers from 1024 to 65535"):
            PORTS.check({"ports": PORTS.changes(FormData([("range", typed)]))["ports"]})
    written = PORTS.check({"ports": PORTS.changes(FormData([("range", " 21000 - 21999 ")]))["ports"]})
    assert written.range == (21000, 21999)
    assert PORTS.in_force(written, GatewayFile.model_validate({"ports": {"range": "21000-21999"}}))
    assert not PORTS.in_force(written, GatewayFile())


def test_a_form_shows_the_file_or_what_was_typed() -> None:
    fields = {f.setting.input: f.value for f in SCHEDULE.fields({"backup_every": "1d"})}
    assert fields == {"every": "1d", "keep": "7"}  # a key not in the file: the schema's default
    typed = SCHEDULE.typed(FormData([("every", "1h"), ("keep", " 9 ")]))
    assert {f.setting.input: f.value for f in SCHEDULE.fields({}, typed)} == {"every": "1h", "keep": "9"}
    assert {f.setting.input: f.value for f in ALERTS.fields({})}["events"] == list(ALL_KINDS)
