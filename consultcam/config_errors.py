"""Settings that cannot start consultcam, said one line per problem: which environment variable, what it must
be, its default, and the value found (never a secret's, and a URL without its password).

`config.read_settings` turns pydantic's `ValidationError` into `SettingsInvalid` with these lines; the checks
that produce the messages are the Settings validators (`config`, `config_checks`). Everything here reads the
settings' fields as given (`Settings.model_fields`), so it does not import the Settings class.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import SettingsError

#: The fields of the settings class (`Settings.model_fields`), by name.
Fields = Mapping[str, FieldInfo]


class SettingsInvalid(Exception):
    """The environment's settings cannot start consultcam. `problems`: one line each, naming the variable
    and what to set, never a secret's value (see `settings_problems`)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def env_name(field: str) -> str:
    """The environment variable of a Settings field: `CONSULTCAM_` + its name in capitals."""
    return f"CONSULTCAM_{field.upper()}"


def scheme_words(url: str) -> str:
    """`scheme 'ftp://'` for a message: never the rest of the URL, which may carry a password."""
    scheme, sep, _ = url.partition("://")
    return f"scheme {scheme + sep!r}" if sep and scheme.isascii() and len(scheme) <= 32 else "no scheme://"


def settings_problems(
    error: ValidationError, fields: Fields, environ: Mapping[str, str] | None = None
) -> list[str]:
    """One line per problem in `error` (from building the settings whose fields are `fields`).

    A field's line: `CONSULTCAM_NAME=value: what it must be; default …`, e.g.
    `CONSULTCAM_PAIRING_TTL_SECONDS=5: must be a whole number from 30 to 3600 (seconds); default 600`.
    The value is left out when it did not come from `environ`; a secret's (tokens, keys, passwords) is
    never shown, and a URL's password and secret-looking query values are replaced by ***. A cross-field
    check's message already names its variables and is kept as it is, one line per problem it found.
    """
    environ = os.environ if environ is None else environ
    lines: list[str] = []
    for item in error.errors(include_url=False, include_input=False):
        message = str(item["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        name = str(item["loc"][0]) if item["loc"] else ""
        if name not in fields:
            lines.extend(line.strip() for line in message.splitlines() if line.strip())
            continue
        variable = env_name(name)
        value = _env_value(variable, environ)
        shown = variable if value is None else f"{variable}={_shown(fields[name], name, value)}"
        if item["type"] == "value_error":
            what = "; ".join(line.strip() for line in message.splitlines() if line.strip())
            what = what.removeprefix(variable).lstrip(":, ").rstrip(".")
        else:
            what = _expected(fields[name], name) or message[:1].lower() + message[1:]
        lines.append(f"{shown}: {what}; {_default_words(fields[name])}")
    return list(dict.fromkeys(lines))


def unreadable(error: SettingsError, fields: Fields, environ: Mapping[str, str] | None = None) -> str:
    """pydantic-settings could not decode a complex field's value (JSON): the same line shape."""
    found = re.search(r'field "(\w+)"', str(error))
    name = found.group(1) if found else ""
    if name not in fields:
        return f"a setting could not be read: {error}"
    variable = env_name(name)
    value = _env_value(variable, os.environ if environ is None else environ)
    shown = variable if value is None else f"{variable}={_shown(fields[name], name, value)}"
    return f"{shown}: could not be read (a JSON value is expected); {_default_words(fields[name])}"


def _env_value(variable: str, environ: Mapping[str, str]) -> str | None:
    # pydantic-settings matches names without regard to case (case_sensitive=False).
    for key, value in environ.items():
        if key.upper() == variable:
            return value
    return None


_SECRET_NAME = re.compile(r"token|secret|password|api_key")
_SECRET_QUERY = re.compile(r"pass|secret|token|key|sig|auth", re.IGNORECASE)


def _shown(field: FieldInfo, name: str, value: str) -> str:
    """The value as it may be printed: hidden for a secret, without credentials for a URL, on one line."""
    if field.repr is False or _SECRET_NAME.search(name):
        return "(hidden)"
    if name.endswith("_url"):
        value = _without_credentials(value)
    shown = value if value.isprintable() else repr(value)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def _without_credentials(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
        query = "&".join(
            f"{key}=***" if _SECRET_QUERY.search(key) else f"{key}={value}"
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return scheme_words(url)


#: Units named by a setting's suffix, for messages.
_UNITS = {"seconds": "seconds", "minutes": "minutes", "hours": "hours", "bytes": "bytes", "px": "pixels"}


def _expected(field: FieldInfo, name: str) -> str | None:
    """What a number or a yes/no setting must be, from its type and bounds, e.g. `must be a whole number
    from 30 to 3600 (seconds)`; None for other types (their validator's message says it)."""
    if field.annotation is bool:
        return "must be true or false (or 1/0, yes/no, on/off)"
    kind = "a whole number" if field.annotation is int else "a number" if field.annotation is float else None
    if kind is None:
        return None
    low = high = ""
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = f"{bound.ge}"
        elif isinstance(bound, annotated_types.Gt):
            low = f"more than {bound.gt}"
        elif isinstance(bound, annotated_types.Le):
            high = f"{bound.le}"
        elif isinstance(bound, annotated_types.Lt):
            high = f"less than {bound.lt}"
    if low and high:
        limits = f" from {low} to {high}" if low[0].isdigit() else f" {low} and at most {high}"
    elif low:
        limits = f" of at least {low}" if low[0].isdigit() else f" {low}"
    elif high:
        limits = f" of at most {high}" if high[0].isdigit() else f" {high}"
    else:
        limits = ""
    unit = _UNITS.get(name.rsplit("_", 1)[-1])
    return f"must be {kind}{limits}" + (f" ({unit})" if unit else "")


def _default_words(field: FieldInfo) -> str:
    default = field.default
    if default in ("", None, ()):
        return "default unset"
    if isinstance(default, bool):
        return f"default {str(default).lower()}"
    if isinstance(default, tuple):
        return f"default {','.join(map(str, default))}"
    if isinstance(default, Path) and not default.is_absolute():
        return f"default ./{default}"
    return f"default {default}"
