"""A settings form made from the schema: each field names a key of a `[section]` of
gateway.toml, and the section's pydantic model (the one the gateway loads it with: the
reconciler's spec, its ops' settings) decides what the field is and whether a value is good.
The page adds only its words and what it offers.

From the model's field the form knows how to read what was typed (`kind`: a whole number, a
list typed one a line, the ticks of a fixed set of choices, a choice, text), whether it may
be left empty (the key is then removed and the schema's default applies), and the choices
to tick (a Literal). The model checks the section as it will be written (`check`); a value
it refuses is said in the field's words. Once written, the gateway has it in force when the
section it loaded reads as the one written (`in_force`). So a new setting on a form is one
`Setting` line and its key in the schema: the handler and the template stay as they are
(`_settings_form.html` draws each field)."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from reconciler.core.digits import plain_digits
from reconciler.core.spec import GatewayFile
from reconciler.ops import section_errors, tomledit

Model = TypeVar("Model", bound=BaseModel)
Kind = Literal["number", "lines", "checks", "choice", "text"]


class SettingsError(ValueError):
    """A settings form that cannot be saved, in words."""


@dataclass(frozen=True)
class Setting:
    """One field: `key` in the section (the form's input is `name`, the key unless it says
    otherwise), and the page's words for it."""

    key: str
    label: str
    name: str = ""
    refused: str = ""  # the page's words when the value is refused (else the schema's own message)
    hint: str = ""  # may hold markup (markupsafe.Markup)
    choices: Mapping[str, str] = field(default_factory=dict)  # value -> words; for ticks, words for the schema's
    empty: str = ""  # ticks: said when none is ticked
    accept: Callable[[object], bool] | None = None  # this page's rule beyond the schema, on the checked value
    show: Callable[[object], str] = str  # the file's value as the field shows it
    clean: Callable[[str], str] = str.strip  # what was typed, before it is read
    attrs: Mapping[str, str] = field(default_factory=dict)  # the input's other attributes (inputmode, size, ...)

    @property
    def input(self) -> str:
        return self.name or self.key


def _strip_none(annotation: object) -> tuple[object, bool]:
    """(the annotation without None, whether None was allowed)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return annotation, False


def _literals(annotation: object) -> tuple[str, ...]:
    """The values of a Literal (inside a tuple: `tuple[Literal[...], ...]`), else ()."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is tuple and args:
        return _literals(args[0])
    if typing.get_origin(annotation) is Literal:
        return tuple(str(a) for a in args)
    return ()


@dataclass(frozen=True)
class FieldView:
    """A field as its template draws it."""

    setting: Setting
    kind: Kind
    value: str | list[str]
    choices: list[tuple[str, str]]


class SettingsForm(Generic[Model]):
    """The fields of one `[section]`, checked by `model`; `check` is this form's check beyond the
    schema (one that needs more than the schema has, like which addresses apprise can reach)."""

    def __init__(self, section: str, model: type[Model], settings: Sequence[Setting],
                 check: Callable[[Model], None] | None = None) -> None:
        self.section, self.model, self.settings, self.extra = section, model, tuple(settings), check
        unknown = [s.key for s in self.settings if s.key not in model.model_fields]
        assert not unknown, f"[{section}] has no {', '.join(unknown)} in {model.__name__}"

    # --- what each field is, from the schema -------------------------------------------------
    def _annotation(self, setting: Setting) -> tuple[object, bool]:
        return _strip_none(self.model.model_fields[setting.key].annotation)

    def kind(self, setting: Setting) -> Kind:
        annotation, _ = self._annotation(setting)
        if annotation is int:
            return "number"
        if _literals(annotation) and typing.get_origin(annotation) is tuple:
            return "checks"
        if typing.get_origin(annotation) is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
            return "lines"
        return "choice" if setting.choices else "text"

    def choices(self, setting: Setting) -> list[tuple[str, str]]:
        """(value, words) offered: a Literal's values in the schema's order, else the page's."""
        values = _literals(self._annotation(setting)[0]) or tuple(setting.choices)
        return [(v, setting.choices.get(v, v)) for v in values]

    def _default(self, setting: Setting) -> object:
        return self.model.model_fields[setting.key].get_default(call_default_factory=True)

    # --- showing -------------------------------------------------------------------------------
    def fields(self, table: Mapping[str, Any], typed: Mapping[str, str | list[str]] | None = None) -> list[FieldView]:
        """Each field with the value the file has (`table`, the section as written now; a missing
        key shows the schema's default), or as it was typed (`typed`, a form sent back)."""
        out = []
        for s in self.settings:
            kind = self.kind(s)
            if typed is not None and s.input in typed:
                value = typed[s.input]
            else:
                raw = table.get(s.key, self._default(s))
                if kind in ("lines", "checks"):
                    value = [str(v) for v in raw or ()]
                    value = "\n".join(value) if kind == "lines" else value
                else:
                    value = "" if raw is None else s.show(raw)
            out.append(FieldView(s, kind, value, self.choices(s)))
        return out

    def typed(self, form: FormData) -> dict[str, str | list[str]]:
        """What was sent, as the fields show it again (a form refused comes back as typed)."""
        out: dict[str, str | list[str]] = {}
        for s in self.settings:
            kind = self.kind(s)
            if kind == "checks":
                offered = [v for v, _ in self.choices(s)]
                out[s.input] = [v for v in (str(x) for x in form.getlist(s.input)) if v in offered]
            elif kind == "lines":
                text = s.clean(str(form.get(s.input, "")))
                out[s.input] = "\n".join(line.strip() for line in text.splitlines() if line.strip())
            else:
                out[s.input] = s.clean(str(form.get(s.input, "")))
        return out

    # --- saving --------------------------------------------------------------------------------
    def changes(self, form: FormData) -> dict[str, dict[str, object]]:
        """`{section: {key: value | tomledit.DELETE}}` from what was sent: a value removed (empty,
        or every choice ticked: the default) lets the schema's default apply."""
        out: dict[str, object] = {}
        for s in self.settings:
            kind = self.kind(s)
            if kind == "checks":
                offered = [v for v, _ in self.choices(s)]
                ticked = [v for v in (str(x) for x in form.getlist(s.input)) if v in offered]
                out[s.key] = tomledit.DELETE if set(ticked) == set(offered) else ticked
                continue
            text = s.clean(str(form.get(s.input, "")))
            if kind == "lines":
                lines = [line.strip() for line in text.splitlines() if line.strip()]
                out[s.key] = lines or tomledit.DELETE
            elif kind == "choice" and text not in s.choices:
                raise SettingsError(s.refused or f"{s.label}: choose one of the listed values.")
            elif kind == "number":
                if not plain_digits(text):
                    raise SettingsError(s.refused or f"{s.label}: write a whole number.")
                out[s.key] = int(text)
            elif not text:
                if not self._annotation(s)[1]:  # the schema has no "unset" for it: it must be given
                    raise SettingsError(s.refused or f"{s.label}: write a value.")
                out[s.key] = tomledit.DELETE
            else:
                out[s.key] = text
        return {self.section: out}

    def check(self, data: Mapping[str, Any]) -> Model:
        """The section of gateway.toml as it will be written (`data`, the whole file), checked by
        the schema, this page's rules and `check`; raises SettingsError in the field's words."""
        try:
            value = self.model.model_validate(dict(data.get(self.section) or {}))
        except ValidationError as exc:
            raise SettingsError(self._words(exc)) from None
        for s in self.settings:
            if s.accept is not None and not s.accept(getattr(value, s.key)):
                raise SettingsError(s.refused or f"{s.label}: that value is not accepted here.")
        if self.extra is not None:
            self.extra(value)
        return value

    def _words(self, exc: ValidationError) -> str:
        """The first refused field's words, else the schema's messages as the loader says them."""
        for err in exc.errors():
            loc = [str(p) for p in err["loc"]]
            owner = next((s for s in self.settings if loc[:1] == [s.key]), None)
            if owner is None and not loc and len(self.settings) == 1:  # the section's own check: its one field
                owner = self.settings[0]
            if owner is not None and owner.refused:
                return owner.refused
        return section_errors(self.section, exc)

    def in_force(self, written: Model, loaded: GatewayFile) -> bool:
        """The gateway loaded the section as written: each field of this form reads the same."""
        try:
            now = self.model.model_validate(loaded.model_dump()[self.section])
        except ValidationError:
            return False
        return all(getattr(now, s.key) == getattr(written, s.key) for s in self.settings)
