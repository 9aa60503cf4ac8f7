"""A config file that holds a literal API token must not be readable by other local users."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gladly_sync.config import load_settings

LITERAL = "tok-8d2e-SECRET-41aa"


def write(folder: Path, token: str, mode: int) -> Path:
    path = folder / "config.yaml"
    config = {"gladly": {"organization": "acme", "email": "api@acme.com", "api_token": token}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(mode)
    return path


class TestTokenExposure:
    @pytest.mark.parametrize(
        ("mode", "who"), [(0o644, "group and others"), (0o640, "group"), (0o604, "others")]
    )
    def test_a_readable_literal_token_draws_a_warning(self, tmp_path, mode, who):
        """A literal token in a file group or others can read: one warning naming the file, who can
        read it and the fix; never the token."""
        path = write(tmp_path, LITERAL, mode)
        settings = load_settings(path, {})
        assert settings.gladly.api_token == LITERAL
        [warning] = settings.warnings
        assert f"{path} holds a literal gladly.api_token and is readable by {who}" in warning
        assert f"chmod 600 {path}" in warning and "${GLADLY_API_TOKEN}" in warning
        assert LITERAL not in warning

    @pytest.mark.parametrize(
        ("token", "mode", "environ"),
        [
            (LITERAL, 0o600, {}),  # private file
            ("${GLADLY_API_TOKEN}", 0o644, {"GLADLY_API_TOKEN": LITERAL}),  # the token is elsewhere
            ("", 0o644, {"GLADLY_API_TOKEN": LITERAL}),  # taken from the environment
        ],
    )
    def test_no_warning_when_the_file_reveals_nothing(self, tmp_path, token, mode, environ):
        """A private file, a ${VAR} reference or a token from the environment draws no warning."""
        settings = load_settings(write(tmp_path, token, mode), environ)
        assert settings.warnings == ()

    def test_an_environment_override_is_not_the_files_token(self, tmp_path):
        """A token given as GLADLY_SYNC__GLADLY__API_TOKEN is not in the file: no warning."""
        path = write(tmp_path, "${GLADLY_API_TOKEN}", 0o644)
        settings = load_settings(path, {"GLADLY_SYNC__GLADLY__API_TOKEN": LITERAL})
        assert settings.warnings == ()
