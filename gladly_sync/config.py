"""Read ``config.yaml`` (plus environment overrides) once, into frozen, typed settings.

Where the values come from, later winning:

1. the YAML file (``--config``, else ``$GLADLY_SYNC_CONFIG``, else ``./config.yaml``);
2. ``GLADLY_SYNC__SECTION__KEY`` environment variables, each parsed as a YAML scalar
   (``true``, ``8``, ``5m``, ``a,b``);
3. ``${VAR}`` references inside any string value, read from the environment;
4. ``$GLADLY_API_TOKEN`` when ``gladly.api_token`` is absent or empty.

Every problem is collected before anything is raised, so one ``ConfigError`` lists them all, one
line each: ``<source>: <section>.<key>: <what is wrong>; <what is expected>``. The API token never
appears in a message or a repr.

It sits at the package root because it belongs to no layer it configures: ``sync`` and
``storage`` (``Store.from_config``) both import it, and it imports neither.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from gladly_sync.errors import ConfigError

__all__ = [
    "GladlySettings",
    "InboxSettings",
    "LoggingSettings",
    "OutboxSettings",
    "ScheduleSettings",
    "Settings",
    "StorageSettings",
    "load_settings",
    "parse_duration",
]

CONFIG_ENV = "GLADLY_SYNC_CONFIG"
TOKEN_ENV = "GLADLY_API_TOKEN"
OVERRIDE_PREFIX = "GLADLY_SYNC__"

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "console", "json")
SYNC_EVERY_MAX = timedelta(hours=12)
EVENTS_WINDOW = timedelta(hours=24)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class GladlySettings:
    """Where Gladly is and who we are there. ``api_token`` is left out of the repr."""

    organization: str
    sandbox: bool
    email: str
    api_token: str = field(repr=False)
    base_url: str | None
    requests_per_second: float
    timeout_seconds: float

    @property
    def host_url(self) -> str:
        """``https://acme.gladly.com`` (``.gladly.qa`` in sandbox), or ``base_url`` when set."""
        if self.base_url:
            return self.base_url.rstrip("/")
        domain = "gladly.qa" if self.sandbox else "gladly.com"
        return f"https://{self.organization}.{domain}"

    @property
    def api_url(self) -> str:
        return f"{self.host_url}/api/v1"

    @property
    def environment(self) -> Literal["production", "sandbox"]:
        """Named by the ``sandbox`` flag, also when ``base_url`` replaces the derived host."""
        return "sandbox" if self.sandbox else "production"


@dataclass(frozen=True)
class InboxSettings:
    ingest: tuple[str, ...]
    escalation: str | None


@dataclass(frozen=True)
class StorageSettings:
    path: Path
    snapshot_path: Path | None
    lock_wait_seconds: float
    outbox_path: Path | None = None  # None: gladly_outbox.sqlite beside the store
    # A postgresql:// URL: the store lives in PostgreSQL instead of DuckDB at path.
    url: str | None = field(default=None, repr=False)
    schema: str | None = None

    def __post_init__(self) -> None:
        if self.outbox_path is None:
            object.__setattr__(self, "outbox_path", self.path.parent / "gladly_outbox.sqlite")


@dataclass(frozen=True)
class ScheduleSettings:
    sync_every: timedelta
    drain_every: timedelta
    reconcile_every: timedelta


@dataclass(frozen=True)
class OutboxSettings:
    enabled: bool
    max_attempts: int
    unknown_settle: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class LoggingSettings:
    level: str
    format: Literal["auto", "console", "json"]


@dataclass(frozen=True)
class Settings:
    gladly: GladlySettings
    inboxes: InboxSettings
    storage: StorageSettings
    schedule: ScheduleSettings
    outbox: OutboxSettings
    logging: LoggingSettings
    config_path: Path
    warnings: tuple[str, ...] = ()  # for the operator; the CLI prints them


# --------------------------------------------------------------------------- field parsers
#
# Each parser takes the raw value and returns the typed value, or raises _Invalid with the
# "what is wrong; what is expected" part of the problem line.


class _Invalid(Exception):
    """One value is wrong; the message says what is wrong and what is expected."""


class _Text(str):
    """A value that came in as text (an environment override or a ``${VAR}`` expansion).

    String fields take it verbatim; other fields first read it as a YAML scalar, so
    ``GLADLY_SYNC__OUTBOX__MAX_ATTEMPTS=8`` is the number 8.
    """


_MISSING = object()


def _scalar(value: Any) -> Any:
    if isinstance(value, _Text):
        try:
            return yaml.safe_load(str(value)) if value.strip() else None
        except yaml.YAMLError:
            return str(value)
    return value


def _nullable(value: Any) -> Any:
    """``None`` for null or blank values (also ``null``/``~`` given as text), else the value."""
    if value is None:
        return None
    if isinstance(value, str) and str(value).strip().lower() in ("", "null", "~"):
        return None
    return value


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(str(value)) if isinstance(value, str) else repr(value)


def _string(value: Any, *, expected: str) -> str:
    if isinstance(value, _Text):
        return str(value)
    if isinstance(value, str):
        return value
    raise _Invalid(f"{_describe(value)} is not text; expected {expected}")


def _boolean(value: Any) -> bool:
    value = _scalar(value)
    if isinstance(value, bool):
        return value
    raise _Invalid(f"{_describe(value)} is not a boolean; expected true or false")


def _number(value: Any, *, minimum: float, inclusive: bool) -> float:
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{_describe(value)} is not a number; expected a number")
    bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
    if not math.isfinite(value):
        raise _Invalid(f"{value!r} is not finite; expected a number {bound}")
    if value < minimum or (value == minimum and not inclusive):
        raise _Invalid(f"{value!r} is too small; expected a number {bound}")
    return float(value)


def _positive_number(value: Any) -> float:
    return _number(value, minimum=0, inclusive=False)


def _non_negative_number(value: Any) -> float:
    return _number(value, minimum=0, inclusive=True)


def _max_attempts(value: Any) -> int:
    value = _scalar(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"{_describe(value)} is not a whole number; expected a whole number of at least 1")
    if value < 1:
        raise _Invalid(f"{value} is too small; expected a whole number of at least 1")
    return value


_SUBDOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _organization(value: Any) -> str:
    text = _string(value, expected="the Gladly subdomain, e.g. 'acme' for https://acme.gladly.com").strip()
    if not text:
        raise _Invalid("is empty; expected the Gladly subdomain, e.g. 'acme' for https://acme.gladly.com")
    if _SUBDOMAIN.match(text):
        return text
    host = (urlsplit(text).hostname or "") if "://" in text else text.split("/")[0]
    bare = host.split(".")[0]
    hint = f"use the bare subdomain {bare!r}" if _SUBDOMAIN.match(bare) else "use the bare subdomain"
    kind = "a URL" if "://" in text else "a host name"
    if host.lower().endswith((".gladly.com", ".gladly.qa")):
        raise _Invalid(f"{text!r} is {kind}; {hint} (set gladly.sandbox: true for .gladly.qa)")
    if "://" in text or "." in text:
        raise _Invalid(
            f"{text!r} is {kind}, not a bare subdomain; expected 'acme' for https://acme.gladly.com "
            "(set gladly.base_url for a host outside .gladly.com/.gladly.qa)"
        )
    raise _Invalid(f"{text!r} is not a bare subdomain; expected letters, digits and '-', e.g. 'acme'")


def _email(value: Any) -> str:
    text = _string(value, expected="the Gladly API user's email address").strip()
    if "@" not in text.strip("@"):
        raise _Invalid(
            f"{text!r} is not an email address; expected the Gladly API user's email, e.g. api@acme.com"
        )
    return text


def _token(value: Any) -> str:
    # Never echo the value: it is (or was meant to be) a secret.
    if isinstance(value, str):
        return value.strip()
    raise _Invalid(f"is not text; expected the API token as text (or set {TOKEN_ENV})")


def _base_url(value: Any) -> str | None:
    value = _nullable(value)
    if value is None:
        return None
    text = _string(value, expected="scheme://host[:port], e.g. http://127.0.0.1:8080").strip()
    expected = "expected scheme://host[:port], e.g. http://127.0.0.1:8080"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"{text!r} is not an http(s) URL; {expected}")
    if parts.username or parts.password:
        raise _Invalid(f"{text!r} carries credentials; {expected} (credentials go in gladly.email/api_token)")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _Invalid(f"{text!r} has an invalid port; {expected}") from None
    if parts.path not in ("", "/"):
        root = f"{parts.scheme}://{parts.netloc}"
        raise _Invalid(
            f"{text!r} has a path ({parts.path}); expected scheme://host[:port] only, e.g. {root!r} "
            "(gladly-sync appends /api/v1)"
        )
    if parts.query or parts.fragment:
        raise _Invalid(f"{text!r} has a query or fragment; {expected}")
    return text.rstrip("/")


def _inbox_id(value: Any, *, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{where} {_describe(value)} is not an inbox id; expected an inbox id string")
    text = str(value).strip()
    if not text:
        raise _Invalid(f"{where} is empty; expected a Gladly inbox id")
    return text


def _ingest(value: Any) -> tuple[str, ...]:
    if isinstance(value, _Text):
        # Read a YAML list only when it looks like one: "0123,abc" must stay text, not octal.
        value = _scalar(value) if str(value).strip().startswith("[") else _nullable(str(value))
    if value is None:
        return ()
    if isinstance(value, str):
        if not value.strip():
            return ()
        items: list[Any] = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise _Invalid(f"{_describe(value)} is not a list; expected a list of inbox ids, or 'id1,id2'")
    ids = [_inbox_id(item, where=f"entry {n}") for n, item in enumerate(items, 1)]
    return tuple(dict.fromkeys(ids))


def _escalation(value: Any) -> str | None:
    if isinstance(value, _Text):
        value = None if str(value).strip().lower() in ("null", "~") else str(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(f"{_describe(value)} is not an inbox id; expected an inbox id or null")
    text = str(value).strip()
    if not text:
        raise _Invalid("is empty; expected an inbox id, or null for no escalation inbox")
    return text


def _path(value: Any) -> str:
    text = _string(value, expected="a file path").strip()
    if not text:
        raise _Invalid("is empty; expected a file path")
    return text


def _optional_path(value: Any) -> str | None:
    if value is None or (isinstance(value, _Text) and _nullable(value) is None):
        return None
    return _path(value)


_URL_SCHEMES = ("postgresql", "postgres")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")


def _hide_password(text: str) -> str:
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", ":***@", 1)


def _storage_url(value: Any) -> str | None:
    value = _nullable(value)
    if value is None:
        return None
    text = _string(value, expected="a postgresql:// URL, or null for DuckDB at storage.path").strip()
    scheme = urlsplit(text).scheme if "://" in text else ""
    if scheme.lower() not in _URL_SCHEMES:
        shown = _hide_password(text) if scheme else text.split("@")[-1]
        raise _Invalid(
            f"{shown!r} is not a postgresql:// URL; expected e.g. postgresql://user@db.internal/gladly "
            "or postgresql:///gladly?host=/var/run/postgresql (null keeps DuckDB at storage.path)"
        )
    if importlib.util.find_spec("psycopg") is None:
        raise _Invalid(
            "needs the PostgreSQL driver, which is not installed; "
            "run pip install 'gladly-sync[postgres]' (or set storage.url: null for DuckDB)"
        )
    return text


def _schema_name(value: Any) -> str | None:
    value = _nullable(value)
    if value is None:
        return None
    text = _string(value, expected="a PostgreSQL schema name").strip()
    if not _IDENTIFIER.match(text):
        raise _Invalid(
            f"{text!r} is not a plain schema name; expected letters, digits and '_' "
            "(starting with a letter or '_'), e.g. gladly"
        )
    return text


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """``'30s'``, ``'5m'``, ``'6h'``, ``'1d'`` → ``timedelta``; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def _duration(value: Any) -> timedelta:
    value = _scalar(value)
    expected = "expected a duration greater than 0 like 30s, 5m, 6h or 1d"
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _Invalid(f"{value!r} has no unit; {expected} (e.g. {value}s)")
    if not isinstance(value, str):
        raise _Invalid(f"{_describe(value)} is not a duration; {expected}")
    if value.strip().startswith("-"):
        raise _Invalid(f"{value!r} is negative; {expected}")
    try:
        duration = parse_duration(value)
    except ValueError:
        raise _Invalid(f"{value!r} is not a duration; {expected}") from None
    if duration <= timedelta(0):
        raise _Invalid(f"{value!r} is zero; {expected}")
    return duration


def _sync_every(value: Any) -> timedelta:
    duration = _duration(value)
    if duration >= EVENTS_WINDOW:
        raise _Invalid(
            f"{_describe(str(value))} is 24 h or more, beyond Gladly's 24 h events window; "
            "expected at most 12h (e.g. 5m)"
        )
    if duration > SYNC_EVERY_MAX:
        raise _Invalid(
            f"{_describe(str(value))} is more than 12h; expected at most 12h "
            "so the events overlap stays inside Gladly's 24 h window"
        )
    return duration


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        value = _scalar(value)
        if isinstance(value, str) and value.strip().lower() in options:
            return value.strip().lower()
        raise _Invalid(f"{_describe(value)} is not allowed; expected one of {', '.join(options)}")

    return parse


# --------------------------------------------------------------------------- the schema


@dataclass(frozen=True)
class _Key:
    parse: Callable[[Any], Any]
    default: Any = _MISSING  # _MISSING = required


SCHEMA: dict[str, dict[str, _Key]] = {
    "gladly": {
        "organization": _Key(_organization),
        "sandbox": _Key(_boolean, False),
        "email": _Key(_email),
        "api_token": _Key(_token, ""),
        "base_url": _Key(_base_url, None),
        "requests_per_second": _Key(_positive_number, 8.0),
        "timeout_seconds": _Key(_positive_number, 30.0),
    },
    "inboxes": {
        "ingest": _Key(_ingest, ()),
        "escalation": _Key(_escalation, None),
    },
    "storage": {
        "path": _Key(_path, "data/gladly.duckdb"),
        "snapshot_path": _Key(_optional_path, "data/gladly_read.duckdb"),
        "lock_wait_seconds": _Key(_non_negative_number, 30.0),
        "outbox_path": _Key(_path, "data/gladly_outbox.sqlite"),
        "url": _Key(_storage_url, None),
        "schema": _Key(_schema_name, None),
    },
    "schedule": {
        "sync_every": _Key(_sync_every, timedelta(minutes=5)),
        "drain_every": _Key(_duration, timedelta(seconds=30)),
        "reconcile_every": _Key(_duration, timedelta(hours=6)),
    },
    "outbox": {
        "enabled": _Key(_boolean, True),
        "max_attempts": _Key(_max_attempts, 8),
        "unknown_settle": _Key(_duration, timedelta(minutes=10)),
    },
    "logging": {
        "level": _Key(_choice(LOG_LEVELS), "info"),
        "format": _Key(_choice(LOG_FORMATS), "auto"),
    },
}


# --------------------------------------------------------------------------- loading


class _Problems:
    """Collects problem lines; each names its source (the file or an env var) and the key."""

    def __init__(self, source: str):
        self.source = source
        self.lines: list[str] = []

    def add(self, key: str | None, message: str, *, source: str | None = None) -> None:
        where = f"{source or self.source}: " + (f"{key}: " if key else "")
        self.lines.append(where + message)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(known)}"


def _unknown_key(section: str, key: str) -> str:
    close = difflib.get_close_matches(key, list(SCHEMA[section]), n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean {section}.{close[0]}?"
    elsewhere = [name for name, keys in SCHEMA.items() if key in keys]
    if elsewhere:
        return f"unknown key in {section}; did you mean {elsewhere[0]}.{key}?"
    return f"unknown key; expected one of {', '.join(SCHEMA[section])}"


def _read_yaml(path: Path, problems: _Problems) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(None, f"file not found; pass --config PATH or set {CONFIG_ENV}")
        return None
    except UnicodeDecodeError:
        problems.add(None, "cannot read the file: it is not UTF-8 text; expected a YAML file")
        return None
    except OSError as exc:
        problems.add(
            None,
            f"cannot read the file ({exc.strerror or type(exc).__name__}); expected a readable YAML file",
        )
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        # Only the parser's short problem text and position: its snippet could quote a secret.
        problems.add(None, f"{at}unreadable YAML ({problem}); expected a YAML mapping of sections")
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.add(
            None, f"the file holds {_describe(data)}; expected a YAML mapping of sections (gladly:, ...)"
        )
        return None
    return data


def _expand(value: Any, environ: Mapping[str, str], missing: list[str]) -> Any:
    """Replace ``${VAR}`` in strings (also inside lists); record the names of unset variables."""
    if isinstance(value, list):
        return [_expand(item, environ, missing) for item in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            missing.append(name)
            return ""
        return environ[name]

    return _Text(_VARIABLE.sub(substitute, value))


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _config_path(path: str | Path | None, environ: Mapping[str, str]) -> Path:
    if path is not None and str(path) != "":
        return Path(path).expanduser()
    if environ.get(CONFIG_ENV):
        return Path(environ[CONFIG_ENV]).expanduser()
    return Path("config.yaml")


def _resolve(folder: Path, text: str) -> Path:
    candidate = Path(text).expanduser()
    return candidate if candidate.is_absolute() else folder / candidate


_Raw = dict[str, dict[str, tuple[Any, str]]]  # section -> key -> (value, where it came from)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, *, require_token: bool = True
) -> Settings:
    """Load and validate the configuration; raise ``ConfigError`` listing every problem.

    ``require_token=False`` is for readers of the local store (``Store.from_config``): a missing
    API token is then no problem and ``gladly.api_token`` is empty.
    """
    environ = os.environ if environ is None else environ
    config_path = _config_path(path, environ)
    problems = _Problems(str(config_path))

    data = _read_yaml(config_path, problems)
    if data is None:
        raise ConfigError(problems.lines)
    raw: _Raw = {name: {} for name in SCHEMA}
    _take_file(data, raw, problems)
    _take_overrides(environ, raw, problems)
    values = _parse(raw, environ, problems, require_token=require_token)
    if problems.lines:
        raise ConfigError(_scrub(problems.lines, environ, raw))

    folder = config_path.parent.resolve()
    storage = values["storage"]
    snapshot = storage["snapshot_path"]
    return Settings(
        gladly=GladlySettings(**values["gladly"]),
        inboxes=InboxSettings(**values["inboxes"]),
        storage=StorageSettings(
            path=_resolve(folder, storage["path"]),
            # PostgreSQL has no snapshot: readers connect to the server (SPEC, Beyond one VM)
            snapshot_path=_resolve(folder, snapshot) if snapshot and not storage["url"] else None,
            lock_wait_seconds=storage["lock_wait_seconds"],
            outbox_path=_resolve(folder, storage["outbox_path"]),
            url=storage["url"],
            schema=storage["schema"],
        ),
        schedule=ScheduleSettings(**values["schedule"]),
        outbox=OutboxSettings(**values["outbox"]),
        logging=LoggingSettings(**values["logging"]),
        config_path=config_path.resolve(),
        warnings=_token_exposure(config_path, raw, problems.source),
    )


def _token_exposure(config_path: Path, raw: _Raw, source: str) -> tuple[str, ...]:
    """A warning when the file holds a literal API token (not ``${VAR}``) that other local users
    can read: anyone on the machine could act as the API user."""
    value, came_from = raw["gladly"].get("api_token", (None, source))
    if came_from != source or not isinstance(value, str) or not value.strip() or "${" in value:
        return ()
    try:
        mode = stat.S_IMODE(config_path.stat().st_mode)
    except OSError:
        return ()
    if not mode & 0o044:
        return ()
    return (
        f"{config_path} holds a literal gladly.api_token and is readable by "
        f"{'group and others' if mode & 0o044 == 0o044 else 'group' if mode & 0o040 else 'others'} "
        f"(mode {mode:04o}); run `chmod 600 {config_path}` or write api_token: ${{{TOKEN_ENV}}}",
    )


def _take_file(data: dict[Any, Any], raw: _Raw, problems: _Problems) -> None:
    for section, body in data.items():
        section_name = str(section)
        if section_name not in SCHEMA:
            problems.add(section_name, f"unknown section; {_suggest(section_name, list(SCHEMA))}")
            continue
        if body is None:
            continue
        if not isinstance(body, dict):
            problems.add(
                section_name, f"{_describe(body)} is not a mapping; expected keys below {section_name}:"
            )
            continue
        for key, value in body.items():
            key_name = str(key)
            if key_name in SCHEMA[section_name]:
                raw[section_name][key_name] = (value, problems.source)
            else:
                problems.add(f"{section_name}.{key_name}", _unknown_key(section_name, key_name))


def _take_overrides(environ: Mapping[str, str], raw: _Raw, problems: _Problems) -> None:
    for variable, value in sorted(environ.items()):
        if not variable.startswith(OVERRIDE_PREFIX):
            continue
        source = f"${variable}"
        parts = variable[len(OVERRIDE_PREFIX) :].lower().split("__")
        if len(parts) != 2:
            problems.add(None, f"not of the form {OVERRIDE_PREFIX}SECTION__KEY", source=source)
            continue
        section_name, key_name = parts
        if section_name not in SCHEMA:
            problems.add(
                section_name, f"unknown section; {_suggest(section_name, list(SCHEMA))}", source=source
            )
        elif key_name not in SCHEMA[section_name]:
            problems.add(f"{section_name}.{key_name}", _unknown_key(section_name, key_name), source=source)
        else:
            raw[section_name][key_name] = (_Text(value), source)


def _parse(
    raw: _Raw, environ: Mapping[str, str], problems: _Problems, *, require_token: bool
) -> dict[str, dict[str, Any]]:
    values: dict[str, dict[str, Any]] = {name: {} for name in SCHEMA}

    def no_token(source: str) -> None:
        if require_token:
            message = f"no API token; set {TOKEN_ENV} or gladly.api_token"
            problems.add("gladly.api_token", message, source=source)
        else:
            values["gladly"]["api_token"] = ""

    for section_name, keys in SCHEMA.items():
        for key_name, spec in keys.items():
            dotted = f"{section_name}.{key_name}"
            value, source = raw[section_name].get(key_name, (_MISSING, problems.source))
            if value is not _MISSING:
                missing: list[str] = []
                value = _expand(value, environ, missing)
                if missing:
                    names = ", ".join(f"${{{name}}}" for name in dict.fromkeys(missing))
                    if dotted == "gladly.api_token" and set(missing) == {TOKEN_ENV}:
                        no_token(source)
                    else:
                        message = f"{names} is not set in the environment; set it or change {dotted}"
                        problems.add(dotted, message, source=source)
                    continue
            if dotted == "gladly.api_token" and (value is _MISSING or _nullable(value) is None):
                value = environ.get(TOKEN_ENV, "")
                if not value.strip():
                    no_token(source)
                    continue
            if value is _MISSING:
                if spec.default is _MISSING:
                    problems.add(dotted, f"missing; {_required_hint(dotted)}", source=source)
                else:
                    values[section_name][key_name] = spec.default
                continue
            try:
                values[section_name][key_name] = spec.parse(value)
            except _Invalid as exc:
                problems.add(dotted, str(exc), source=source)
    return values


def _required_hint(dotted: str) -> str:
    return {
        "gladly.organization": "expected the Gladly subdomain, e.g. 'acme' for https://acme.gladly.com",
        "gladly.email": "expected the email of the Gladly API user that owns the token",
    }.get(dotted, "expected a value")


def _scrub(lines: list[str], environ: Mapping[str, str], raw: _Raw) -> list[str]:
    """Belt and braces: blank out any token we know of, should one have slipped into a message."""
    secrets = {environ.get(TOKEN_ENV, "")}
    token_value = raw["gladly"].get("api_token", (None, ""))[0]
    if isinstance(token_value, str):
        secrets.add(token_value)
        secrets.update(environ.get(name, "") for name in _VARIABLE.findall(token_value))
    secrets = {secret for secret in secrets if len(secret.strip()) >= 4}
    scrubbed = []
    for line in lines:
        for secret in secrets:
            line = line.replace(secret, "***")
        scrubbed.append(line)
    return scrubbed
