"""Configuration: config.yaml plus environment, parsed once into frozen settings."""

from __future__ import annotations

import copy
import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from gladly_sync.config import Settings, load_settings, parse_duration
from gladly_sync.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TOKEN = "tok-8d2e-SECRET-41aa"
ENV = {"GLADLY_API_TOKEN": TOKEN}

VALID = {
    "gladly": {"organization": "acme", "email": "api@acme.com", "api_token": "${GLADLY_API_TOKEN}"},
}


def write(folder: Path, config: dict | str) -> Path:
    path = folder / "config.yaml"
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config), encoding="utf-8")
    return path


def with_value(section: str, key: str, value) -> dict:
    config = copy.deepcopy(VALID)
    config.setdefault(section, {})[key] = value
    return config


def problems_of(path: Path, environ: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        load_settings(path, ENV if environ is None else environ)
    assert raised.value.exit_code == 2
    assert str(raised.value) == "\n".join(raised.value.problems)
    return raised.value.problems


class TestShippedConfig:
    def test_the_shipped_config_yaml_loads(self):
        """The repository's config.yaml is valid and says what SPEC.md says."""
        settings = load_settings(REPO / "config.yaml", ENV)
        gladly = settings.gladly
        assert (gladly.organization, gladly.sandbox, gladly.email, gladly.api_token) == (
            "acme",
            False,
            "api-user@acme.com",
            TOKEN,
        )
        assert (gladly.base_url, gladly.requests_per_second, gladly.timeout_seconds) == (None, 8.0, 30.0)
        assert gladly.api_url == "https://acme.gladly.com/api/v1"
        assert settings.inboxes == dataclasses.replace(settings.inboxes, ingest=(), escalation=None)
        assert settings.storage.path == REPO / "data" / "gladly.duckdb"
        assert settings.storage.snapshot_path == REPO / "data" / "gladly_read.duckdb"
        assert settings.storage.lock_wait_seconds == 30
        assert (
            settings.schedule.sync_every,
            settings.schedule.drain_every,
            settings.schedule.reconcile_every,
        ) == (
            timedelta(minutes=5),
            timedelta(seconds=30),
            timedelta(hours=6),
        )
        assert (settings.outbox.enabled, settings.outbox.max_attempts) == (True, 8)
        assert (settings.logging.level, settings.logging.format) == ("info", "auto")
        assert settings.config_path == REPO / "config.yaml"

    def test_settings_are_frozen(self):
        """Settings cannot be changed after loading."""
        settings = load_settings(REPO / "config.yaml", ENV)
        with pytest.raises(dataclasses.FrozenInstanceError):
            settings.gladly.sandbox = True  # type: ignore[misc]


class TestLocation:
    def test_path_from_gladly_sync_config(self, tmp_path):
        """Without a path, $GLADLY_SYNC_CONFIG names the file."""
        path = write(tmp_path, VALID)
        assert load_settings(None, {**ENV, "GLADLY_SYNC_CONFIG": str(path)}).config_path == path

    def test_path_defaults_to_config_yaml_in_the_working_folder(self, tmp_path, monkeypatch):
        """Without a path or $GLADLY_SYNC_CONFIG, ./config.yaml is read."""
        write(tmp_path, VALID)
        monkeypatch.chdir(tmp_path)
        assert load_settings(None, ENV).config_path == tmp_path / "config.yaml"

    def test_relative_paths_are_relative_to_the_config_folder(self, tmp_path, monkeypatch):
        """storage paths resolve against the config file's folder, not the working folder."""
        folder = tmp_path / "etc"
        folder.mkdir()
        config = with_value("storage", "path", "db/main.duckdb")
        config["storage"]["snapshot_path"] = "/var/lib/read.duckdb"
        path = write(folder, config)
        monkeypatch.chdir(tmp_path)
        storage = load_settings("etc/config.yaml", ENV).storage
        assert storage.path == folder / "db" / "main.duckdb"
        assert storage.snapshot_path == Path("/var/lib/read.duckdb")
        assert path.exists()

    def test_a_postgres_store_has_no_snapshot(self, tmp_path):
        """With storage.url, snapshot_path is ignored: readers connect to PostgreSQL itself, and a
        DuckDB snapshot left from before the move is never read."""
        path = write(tmp_path, with_value("storage", "url", "postgresql://gladly@db/gladly"))
        assert load_settings(path, ENV).storage.snapshot_path is None

    def test_snapshot_can_be_turned_off(self, tmp_path):
        """snapshot_path: null means no snapshot."""
        path = write(tmp_path, with_value("storage", "snapshot_path", None))
        assert load_settings(path, ENV).storage.snapshot_path is None


class TestGladlyUrls:
    @pytest.mark.parametrize(
        ("sandbox", "base_url", "host_url", "environment"),
        [
            (False, None, "https://acme.gladly.com", "production"),
            (True, None, "https://acme.gladly.qa", "sandbox"),
            (False, "http://127.0.0.1:8080/", "http://127.0.0.1:8080", "production"),
            (True, "https://proxy.internal:8443", "https://proxy.internal:8443", "sandbox"),
        ],
    )
    def test_host_api_url_and_environment(self, tmp_path, sandbox, base_url, host_url, environment):
        """The host comes from organization and sandbox, or base_url; /api/v1 is appended once."""
        config = with_value("gladly", "sandbox", sandbox)
        config["gladly"]["base_url"] = base_url
        gladly = load_settings(write(tmp_path, config), ENV).gladly
        assert (gladly.host_url, gladly.api_url, gladly.environment) == (
            host_url,
            f"{host_url}/api/v1",
            environment,
        )


class TestEnvironment:
    def test_variables_are_expanded(self, tmp_path):
        """${VAR} in any string is read from the environment, and typed like the key."""
        config = with_value("gladly", "email", "${API_EMAIL}")
        config["gladly"]["requests_per_second"] = "${RPS}"
        config["storage"] = {"path": "${DATA}/gladly.duckdb"}
        settings = load_settings(
            write(tmp_path, config), {**ENV, "API_EMAIL": "ops@acme.com", "RPS": "4", "DATA": "/srv"}
        )
        assert settings.gladly.email == "ops@acme.com"
        assert settings.gladly.requests_per_second == 4.0
        assert settings.storage.path == Path("/srv/gladly.duckdb")

    def test_missing_variable_names_key_and_variable(self, tmp_path):
        """An unset ${VAR} is a problem naming the key and the variable."""
        path = write(tmp_path, with_value("gladly", "email", "${API_EMAIL}"))
        assert problems_of(path) == [
            f"{path}: gladly.email: ${{API_EMAIL}} is not set in the environment; "
            "set it or change gladly.email"
        ]

    @pytest.mark.parametrize(
        ("variable", "value", "section", "key", "expected"),
        [
            ("GLADLY_SYNC__GLADLY__SANDBOX", "true", "gladly", "sandbox", True),
            ("GLADLY_SYNC__GLADLY__REQUESTS_PER_SECOND", "8", "gladly", "requests_per_second", 8.0),
            ("GLADLY_SYNC__GLADLY__ORGANIZATION", "globex", "gladly", "organization", "globex"),
            (
                "GLADLY_SYNC__GLADLY__BASE_URL",
                "http://localhost:9000",
                "gladly",
                "base_url",
                "http://localhost:9000",
            ),
            ("GLADLY_SYNC__INBOXES__INGEST", "a,b", "inboxes", "ingest", ("a", "b")),
            ("GLADLY_SYNC__INBOXES__INGEST", "[a, b]", "inboxes", "ingest", ("a", "b")),
            ("GLADLY_SYNC__INBOXES__INGEST", "0123,4", "inboxes", "ingest", ("0123", "4")),
            ("GLADLY_SYNC__INBOXES__ESCALATION", "tier2", "inboxes", "escalation", "tier2"),
            ("GLADLY_SYNC__INBOXES__ESCALATION", "null", "inboxes", "escalation", None),
            ("GLADLY_SYNC__STORAGE__SNAPSHOT_PATH", "null", "storage", "snapshot_path", None),
            ("GLADLY_SYNC__SCHEDULE__SYNC_EVERY", "1m", "schedule", "sync_every", timedelta(minutes=1)),
            ("GLADLY_SYNC__OUTBOX__ENABLED", "false", "outbox", "enabled", False),
            ("GLADLY_SYNC__OUTBOX__MAX_ATTEMPTS", "3", "outbox", "max_attempts", 3),
            ("GLADLY_SYNC__LOGGING__LEVEL", "DEBUG", "logging", "level", "debug"),
        ],
    )
    def test_env_overrides_win_over_the_file(self, tmp_path, variable, value, section, key, expected):
        """GLADLY_SYNC__SECTION__KEY replaces the file's value, read as a YAML scalar."""
        path = write(tmp_path, VALID)
        settings = load_settings(path, {**ENV, variable: value})
        assert getattr(getattr(settings, section), key) == expected

    def test_bad_override_names_the_variable_and_key(self, tmp_path):
        """An override is validated like the file, and its line names the variable."""
        path = write(tmp_path, VALID)
        environ = {**ENV, "GLADLY_SYNC__OUTBOX__MAX_ATTEMPTS": "0", "GLADLY_SYNC__GLADLY__ORGANISATION": "x"}
        assert problems_of(path, environ) == [
            "$GLADLY_SYNC__GLADLY__ORGANISATION: gladly.organisation: unknown key; "
            "did you mean gladly.organization?",
            "$GLADLY_SYNC__OUTBOX__MAX_ATTEMPTS: outbox.max_attempts: 0 is too small; "
            "expected a whole number of at least 1",
        ]

    @pytest.mark.parametrize("token_value", [None, "", "   "], ids=["absent", "empty", "blank"])
    def test_token_falls_back_to_gladly_api_token(self, tmp_path, token_value):
        """An absent or empty gladly.api_token is taken from $GLADLY_API_TOKEN."""
        config = copy.deepcopy(VALID)
        if token_value is None:
            del config["gladly"]["api_token"]
        else:
            config["gladly"]["api_token"] = token_value
        assert load_settings(write(tmp_path, config), ENV).gladly.api_token == TOKEN

    def test_token_in_the_file_is_used(self, tmp_path):
        """A literal token in the file wins over the environment."""
        path = write(tmp_path, with_value("gladly", "api_token", "from-file-123"))
        assert load_settings(path, ENV).gladly.api_token == "from-file-123"

    def test_token_from_an_override(self, tmp_path):
        """GLADLY_SYNC__GLADLY__API_TOKEN is taken verbatim, never parsed as YAML."""
        path = write(tmp_path, VALID)
        assert load_settings(path, {"GLADLY_SYNC__GLADLY__API_TOKEN": "0123"}).gladly.api_token == "0123"

    @pytest.mark.parametrize(
        "config",
        [VALID, with_value("gladly", "api_token", None), with_value("gladly", "api_token", "")],
        ids=["reference", "null", "empty"],
    )
    def test_missing_token_says_where_to_set_it(self, tmp_path, config):
        """No token anywhere: one problem saying to set GLADLY_API_TOKEN or gladly.api_token."""
        path = write(tmp_path, config)
        assert problems_of(path, {}) == [
            f"{path}: gladly.api_token: no API token; set GLADLY_API_TOKEN or gladly.api_token"
        ]

    @pytest.mark.parametrize(
        "config",
        [VALID, with_value("gladly", "api_token", None), with_value("gladly", "api_token", "")],
        ids=["reference", "null", "empty"],
    )
    def test_store_readers_need_no_token(self, tmp_path, config):
        """require_token=False (Store.from_config): no token is no problem, and the token is empty."""
        settings = load_settings(write(tmp_path, config), {}, require_token=False)
        assert settings.gladly.api_token == ""
        assert settings.storage.path == tmp_path / "data" / "gladly.duckdb"

    def test_store_readers_still_get_every_other_problem(self, tmp_path):
        """require_token=False waives only the token: other problems still fail the load."""
        path = write(tmp_path, with_value("gladly", "email", "not-an-email"))
        with pytest.raises(ConfigError) as caught:
            load_settings(path, {}, require_token=False)
        assert [line.split(": ")[1] for line in caught.value.problems] == ["gladly.email"]


class TestIngest:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ([], ()),
            (None, ()),
            ("", ()),
            (["in1", "in2"], ("in1", "in2")),
            ("in1,in2", ("in1", "in2")),
            (" in1 , in2 ", ("in1", "in2")),
            (["in1", "in1"], ("in1",)),
        ],
    )
    def test_list_or_comma_string(self, tmp_path, value, expected):
        """ingest takes a list or an 'id1,id2' string; empty means all inboxes."""
        path = write(tmp_path, with_value("inboxes", "ingest", value))
        assert load_settings(path, ENV).inboxes.ingest == expected


QA_HINT = "(set gladly.sandbox: true for .gladly.qa)"
DURATION = "expected a duration greater than 0 like 30s, 5m, 6h or 1d"

BAD_VALUES = [
    # section, key, value, the message after "<file>: <section>.<key>: "
    ("gladly", "organization", "acme.gladly.com",
     f"'acme.gladly.com' is a host name; use the bare subdomain 'acme' {QA_HINT}"),
    ("gladly", "organization", "https://acme.gladly.qa/",
     f"'https://acme.gladly.qa/' is a URL; use the bare subdomain 'acme' {QA_HINT}"),
    ("gladly", "organization", "acme.example.com", "'acme.example.com' is a host name, not a bare subdomain"),
    ("gladly", "organization", "", "is empty; expected the Gladly subdomain"),
    ("gladly", "organization", "ac me", "'ac me' is not a bare subdomain"),
    ("gladly", "organization", 42, "42 is not text"),
    ("gladly", "sandbox", "perhaps", "'perhaps' is not a boolean; expected true or false"),
    ("gladly", "email", "api.acme.com", "'api.acme.com' is not an email address"),
    ("gladly", "email", ["a@b.c"], "a list is not text"),
    ("gladly", "base_url", "https://acme.gladly.com/api/v1",
     "'https://acme.gladly.com/api/v1' has a path (/api/v1); expected scheme://host[:port] only, "
     "e.g. 'https://acme.gladly.com' (gladly-sync appends /api/v1)"),
    ("gladly", "base_url", "localhost:8080", "is not an http(s) URL"),
    ("gladly", "base_url", "ftp://files.acme.com", "is not an http(s) URL"),
    ("gladly", "base_url", "http://localhost:99999", "has an invalid port"),
    ("gladly", "base_url", "http://user:pw@localhost", "carries credentials"),
    ("gladly", "requests_per_second", 0, "0 is too small; expected a number greater than 0"),
    ("gladly", "requests_per_second", -2.5, "-2.5 is too small"),
    ("gladly", "requests_per_second", "fast", "'fast' is not a number"),
    ("gladly", "requests_per_second", True, "true is not a number"),
    ("gladly", "requests_per_second", float("inf"), "inf is not finite"),
    ("gladly", "timeout_seconds", 0, "0 is too small; expected a number greater than 0"),
    ("inboxes", "ingest", ["in1", ""], "entry 2 is empty; expected a Gladly inbox id"),
    ("inboxes", "ingest", "in1,,in2", "entry 2 is empty"),
    ("inboxes", "ingest", {"a": 1}, "a mapping is not a list"),
    ("inboxes", "ingest", [None], "entry 1 null is not an inbox id"),
    ("inboxes", "escalation", "", "is empty; expected an inbox id, or null for no escalation inbox"),
    ("inboxes", "escalation", ["x"], "a list is not an inbox id"),
    ("storage", "path", "", "is empty; expected a file path"),
    ("storage", "lock_wait_seconds", -1, "-1 is too small; expected a number at least 0"),
    ("schedule", "sync_every", "24h",
     "'24h' is 24 h or more, beyond Gladly's 24 h events window; expected at most 12h"),
    ("schedule", "sync_every", "2d", "'2d' is 24 h or more"),
    ("schedule", "sync_every", "13h", "'13h' is more than 12h; expected at most 12h"),
    ("schedule", "sync_every", "0s", f"'0s' is zero; {DURATION}"),
    ("schedule", "drain_every", "-30s", "'-30s' is negative"),
    ("schedule", "drain_every", "30", "'30' is not a duration"),
    ("schedule", "drain_every", 30, f"30 has no unit; {DURATION} (e.g. 30s)"),
    ("schedule", "reconcile_every", "6 hours", "'6 hours' is not a duration"),
    ("schedule", "reconcile_every", "0d", "is zero"),
    ("outbox", "enabled", "sometimes", "'sometimes' is not a boolean"),
    ("outbox", "max_attempts", 0, "0 is too small; expected a whole number of at least 1"),
    ("outbox", "max_attempts", 2.5, "2.5 is not a whole number"),
    ("logging", "level", "verbose",
     "'verbose' is not allowed; expected one of debug, info, warning, error, critical"),
    ("logging", "format", "xml", "'xml' is not allowed; expected one of auto, console, json"),
]  # fmt: skip  # a table reads better one case per line


class TestProblems:
    @pytest.mark.parametrize(
        ("section", "key", "value", "message"), BAD_VALUES, ids=lambda v: v if isinstance(v, str) else None
    )
    def test_bad_value_is_one_line_naming_file_and_key(self, tmp_path, section, key, value, message):
        """Each bad value gives exactly one line: file, dotted key, what is wrong, what is expected."""
        path = write(tmp_path, with_value(section, key, value))
        [line] = problems_of(path)
        assert line.startswith(f"{path}: {section}.{key}: ")
        assert message in line

    @pytest.mark.parametrize(
        ("config", "line"),
        [
            (with_value("gladly", "organisation", "acme"),
             "gladly.organisation: unknown key; did you mean gladly.organization?"),
            (with_value("storage", "sync_every", "5m"),
             "storage.sync_every: unknown key in storage; did you mean schedule.sync_every?"),
            (with_value("outbox", "colour", "red"),
             "outbox.colour: unknown key; expected one of enabled, max_attempts"),
            ({**VALID, "gladlyy": {}}, "gladlyy: unknown section; did you mean 'gladly'?"),
            ({**VALID, "metrics": {}}, "metrics: unknown section; expected one of gladly, inboxes, storage"),
            ({**VALID, "storage": ["x"]}, "storage: a list is not a mapping; expected keys below storage:"),
            ({"gladly": {"email": "api@acme.com"}},
             "gladly.organization: missing; expected the Gladly subdomain"),
            ({"gladly": {"organization": "acme"}},
             "gladly.email: missing; expected the email of the Gladly API user"),
        ],
    )  # fmt: skip
    def test_structure_problems(self, tmp_path, config, line):
        """Unknown sections and keys (with the closest known one) and missing required keys."""
        path = write(tmp_path, config)
        [problem] = problems_of(path)
        assert problem.startswith(f"{path}: {line}")

    def test_all_problems_are_reported_at_once(self, tmp_path):
        """Every problem gets its own line in one ConfigError, in file order."""
        config = {
            "gladly": {"organization": "https://acme.gladly.com", "email": "nobody", "sandbox": "no way"},
            "schedule": {"sync_every": "1d", "drain_every": "0s"},
            "logging": {"level": "loud"},
        }
        problems = problems_of(write(tmp_path, config))
        keys = [line.split(": ")[1] for line in problems]
        assert keys == [
            "gladly.organization",
            "gladly.sandbox",
            "gladly.email",
            "schedule.sync_every",
            "schedule.drain_every",
            "logging.level",
        ]

    def test_missing_file(self, tmp_path):
        """A missing file says so and how to name another."""
        path = tmp_path / "nope.yaml"
        assert problems_of(path) == [f"{path}: file not found; pass --config PATH or set GLADLY_SYNC_CONFIG"]

    def test_unreadable_file(self, tmp_path):
        """A path that cannot be read (a folder here) is a problem, not a traceback."""
        [line] = problems_of(tmp_path)
        assert line.startswith(f"{tmp_path}: cannot read the file")

    def test_unreadable_yaml_names_the_line(self, tmp_path):
        """Broken YAML gives the line number."""
        path = write(tmp_path, "gladly:\n  organization: acme\n  email: [oops\nlogging:\n  level: info\n")
        [line] = problems_of(path)
        assert line.startswith(f"{path}: line ")
        assert "unreadable YAML" in line
        assert int(line.split("line ")[1].split(",")[0]) in (4, 5)

    @pytest.mark.parametrize("text", ["- a\n- b\n", "just text\n"])
    def test_top_level_must_be_a_mapping(self, tmp_path, text):
        """The file must hold a mapping of sections."""
        [line] = problems_of(write(tmp_path, text))
        assert "expected a YAML mapping of sections" in line

    def test_empty_file_reports_the_required_keys(self, tmp_path):
        """An empty file is read as no settings: the required keys are missing."""
        problems = problems_of(write(tmp_path, ""))
        assert [line.split(": ")[1] for line in problems] == ["gladly.organization", "gladly.email"]


class TestSecrets:
    def test_token_is_not_in_repr_or_str(self):
        """Settings print without the token."""
        settings = load_settings(REPO / "config.yaml", ENV)
        assert isinstance(settings, Settings)
        for text in (repr(settings), str(settings), repr(settings.gladly), str(settings.gladly)):
            assert TOKEN not in text
            assert "api_token" not in text

    @pytest.mark.parametrize(
        "config",
        [
            with_value("gladly", "api_token", ["tok-8d2e-SECRET-41aa"]),
            {
                **with_value("gladly", "email", "tok-8d2e-SECRET-41aa"),
                "logging": {"level": "tok-8d2e-SECRET-41aa"},
            },
            "gladly:\n  organization: acme\n  api_token: tok-8d2e-SECRET-41aa: x\n",
            "gladly:\n  organization: acme\n  api_token: tok-8d2e-SECRET-41aa\n  email: [\n",
        ],
        ids=["wrong-type", "token-pasted-elsewhere", "yaml-error-on-token-line", "yaml-error-after-token"],
    )
    def test_token_is_in_no_problem_line(self, tmp_path, config):
        """Whatever goes wrong, no message carries the token."""
        path = write(tmp_path, config)
        problems = problems_of(path)
        assert problems
        assert all(TOKEN not in line for line in problems)


class TestDurations:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("30s", timedelta(seconds=30)),
            ("5m", timedelta(minutes=5)),
            ("6h", timedelta(hours=6)),
            ("1d", timedelta(days=1)),
            (" 12h ", timedelta(hours=12)),
        ],
    )
    def test_units(self, text, expected):
        """<n>s, <n>m, <n>h and <n>d are durations."""
        assert parse_duration(text) == expected

    @pytest.mark.parametrize("text", ["", "5", "5 minutes", "1.5h", "h", "5w", "-5m"])
    def test_other_text_is_refused(self, text):
        """Anything else is not a duration."""
        with pytest.raises(ValueError):
            parse_duration(text)


class TestStorageUrl:
    def test_default_is_duckdb(self, tmp_path):
        """Without storage.url the store is DuckDB at storage.path, in the server's default schema."""
        storage = load_settings(write(tmp_path, VALID), ENV).storage
        assert (storage.url, storage.schema) == (None, None)

    @pytest.mark.parametrize(
        "url",
        [
            "postgresql://gladly@db.internal:5432/gladly",
            "postgres://gladly@db.internal/gladly",
            "postgresql:///gladly?host=/var/run/postgresql&port=5433",
        ],
    )
    def test_postgresql_urls(self, tmp_path, url):
        """postgresql:// and postgres:// URLs, libpq parameters included, are taken as written."""
        storage = load_settings(write(tmp_path, with_value("storage", "url", url)), ENV).storage
        assert storage.url == url

    def test_variables_and_schema(self, tmp_path):
        """${VAR} expands inside the URL; the schema is a plain identifier; the URL is not in the repr."""
        config = with_value("storage", "url", "postgresql://gladly:${PGPASS}@db/gladly")
        config["storage"]["schema"] = "gladly_sync"
        settings = load_settings(write(tmp_path, config), {**ENV, "PGPASS": "pw-93af-SECRET"})
        assert settings.storage.url == "postgresql://gladly:pw-93af-SECRET@db/gladly"
        assert settings.storage.schema == "gladly_sync"
        assert "pw-93af-SECRET" not in repr(settings)

    @pytest.mark.parametrize(
        "url", ["mysql://root:pw-93af-SECRET@db/gladly", "sqlite:///x.db", "db.internal/gladly", "duckdb.db"]
    )
    def test_other_schemes_are_refused(self, tmp_path, url):
        """A URL that is not postgresql:// is refused (exit 2), naming the key and what is expected,
        never showing a password."""
        (line,) = problems_of(write(tmp_path, with_value("storage", "url", url)))
        assert "storage.url: " in line and "is not a postgresql:// URL" in line
        assert "pw-93af-SECRET" not in line

    def test_missing_driver_says_what_to_install(self, tmp_path, monkeypatch):
        """A Postgres URL without the driver installed says pip install 'gladly-sync[postgres]'."""
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
        )
        (line,) = problems_of(write(tmp_path, with_value("storage", "url", "postgresql://db/gladly")))
        assert "storage.url: " in line and "pip install 'gladly-sync[postgres]'" in line

    @pytest.mark.parametrize("schema", ["gladly-sync", "a.b", "1abc", 'x"; DROP'])
    def test_bad_schema_names(self, tmp_path, schema):
        """storage.schema must be a plain identifier."""
        (line,) = problems_of(write(tmp_path, with_value("storage", "schema", schema)))
        assert "storage.schema: " in line and "is not a plain schema name" in line
