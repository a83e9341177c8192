"""Command-line options derived from a settings dataclass of empfast/config.py: one flag and one
EMPFAST_* variable per field, named after the field, typed by its annotation, with its default and
the help text of its `setting()`. Nothing about a setting is restated here, so a new field is an
option at once."""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

ENV_PREFIX = "EMPFAST_"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

Settings = TypeVar("Settings")
Converter = Callable[[str], Any]


class SettingError(ValueError):
    """An EMPFAST_* variable whose value cannot be converted; the message names the variable."""


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r} (expected a whole number)") from None


def parse_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r} (expected a number)") from None


def parse_bool(text: str) -> bool:
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f"invalid bool value: {text!r} (expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)})")


def parse_choice(choices: tuple[str, ...]) -> Converter:
    def parse(text: str) -> str:
        if text not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (expected one of "
                                             f"{', '.join(choices)})")
        return text
    return parse


def converter_for(hint: Any) -> tuple[Converter, str]:
    """How to read a field of this annotation from text, and its metavar in --help."""
    if get_origin(hint) in (Union, types.UnionType):  # `T | None`: no value is the field's default
        (hint,) = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        return parse_choice(choices), "{" + ",".join(choices) + "}"
    known: dict[Any, tuple[Converter, str]] = {int: (parse_int, "INT"), float: (parse_float, "NUMBER"),
                                               bool: (parse_bool, "BOOL"), str: (str, "TEXT")}
    if hint not in known:
        raise TypeError(f"no command-line conversion for a setting of type {hint!r}")
    return known[hint]


@dataclass(frozen=True)
class Alias:
    """An older flag (and its variable) kept working for a field, in seconds where the field is in
    milliseconds if `from_seconds`."""

    name: str  # as the flag, without the dashes: "lease-s"
    field_name: str
    from_seconds: bool = False

    @property
    def flag(self) -> str:
        return f"--{self.name}"

    @property
    def variable(self) -> str:
        return ENV_PREFIX + self.name.replace("-", "_").upper()

    def converter(self, field_type: Any) -> Converter:
        if not self.from_seconds:
            return converter_for(field_type)[0]

        def milliseconds(text: str) -> int:
            return round(parse_float(text) * 1000)
        return milliseconds


@dataclass(frozen=True)
class SettingsOptions(Generic[Settings]):
    """The options of one settings dataclass: `add_to` a parser, then `build` it from the parsed
    arguments. A flag on the command line beats its variable, which beats the field's default; an
    empty value, flag or variable, counts as not given."""

    settings: type[Settings]
    title: str
    prefix: str = ""  # for a dataclass whose field names would clash with another's, e.g. "redis"
    renames: Mapping[str, str] = field(default_factory=dict)  # field name -> option name
    aliases: tuple[Alias, ...] = ()
    unset_help: Mapping[str, str] = field(default_factory=dict)  # field name -> what no value means

    def option_name(self, field_name: str) -> str:
        name = self.renames.get(field_name, field_name)
        return f"{self.prefix}_{name}" if self.prefix else name

    def flag(self, field_name: str) -> str:
        return "--" + self.option_name(field_name).replace("_", "-")

    def variable(self, field_name: str) -> str:
        return ENV_PREFIX + self.option_name(field_name).upper()

    def _fields(self) -> list[tuple[dataclasses.Field[Any], Any]]:
        hints = get_type_hints(self.settings)
        return [(f, hints[f.name]) for f in dataclasses.fields(self.settings)]  # type: ignore[arg-type]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group(self.title)
        for settings_field, hint in self._fields():
            dest = self.option_name(settings_field.name)
            help_text = self._help(settings_field, hint)
            if hint is bool:
                group.add_argument(self.flag(settings_field.name), dest=dest, help=help_text,
                                   action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
            else:
                convert, metavar = converter_for(hint)
                group.add_argument(self.flag(settings_field.name), dest=dest, type=convert,
                                   metavar=metavar, help=help_text, default=argparse.SUPPRESS)
        hints = get_type_hints(self.settings)
        for alias in self.aliases:
            unit = ", in seconds" if alias.from_seconds else ""
            group.add_argument(alias.flag, dest=self.option_name(alias.field_name),
                               metavar="SECONDS" if alias.from_seconds
                               else converter_for(hints[alias.field_name])[1],
                               type=alias.converter(hints[alias.field_name]), default=argparse.SUPPRESS,
                               help=f"older name of {self.flag(alias.field_name)}{unit} (env "
                                    f"{alias.variable})")

    def _help(self, settings_field: dataclasses.Field[Any], hint: Any) -> str:
        default = settings_field.default
        if settings_field.name in self.unset_help:
            shown = f"default: {self.unset_help[settings_field.name]}; "
        elif hint is bool:
            shown = f"default: {'on' if default else 'off'}; "
        elif default is None or default == "":
            shown = ""  # the help text says what no value means
        else:
            shown = f"default: {default}; "
        variable = self.variable(settings_field.name)
        if hint is bool:
            variable += "=true|false"
        # argparse %-formats help
        return f"{settings_field.metadata['help']} ({shown}env {variable})".replace("%", "%%")

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The fields given by a flag or a variable, converted. Raises SettingError for a variable
        that cannot be converted."""
        values: dict[str, Any] = {}
        for settings_field, hint in self._fields():
            value = getattr(args, self.option_name(settings_field.name), "")
            if value == "":
                value = self._from_environment(settings_field.name, hint)
            if value != "":
                values[settings_field.name] = value
        return values

    def _from_environment(self, field_name: str, hint: Any) -> Any:
        own = (self.variable(field_name), converter_for(hint)[0])
        older = [(alias.variable, alias.converter(hint)) for alias in self.aliases
                 if alias.field_name == field_name]
        for variable, convert in (own, *older):
            text = os.environ.get(variable, "")
            if text:
                try:
                    return convert(text)
                except argparse.ArgumentTypeError as exc:
                    raise SettingError(f"{variable}: {exc}") from None
        return ""

    def build(self, args: argparse.Namespace) -> Settings:
        """The dataclass from flags, variables and defaults. Raises ValueError for a value it refuses."""
        return self.settings(**self.given(args))
