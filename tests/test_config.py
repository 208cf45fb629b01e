"""Configuration: Python objects, TOML files, and start-up errors naming keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lti_middleware.config import CONFIG_ENV_VAR, load_config
from lti_middleware.exceptions import ConfigurationError

from .conftest import ISS, registration, tool_config

TOML = """
[tool]
login_url = "https://tool.example.org/lti/login"
launch_url = "https://tool.example.org/lti/launch"
jwks_url = "https://tool.example.org/lti/jwks"
private_key_files = ["keys/tool.pem"]
leeway = 30

[[platforms]]
issuer = "https://canvas.instructure.com"
client_id = "10000000000042"
deployment_ids = ["7:3c1f0e2d9a"]
auth_login_url = "https://sso.canvaslms.com/api/lti/authorize_redirect"
token_url = "https://sso.canvaslms.com/login/oauth2/token"
key_set_url = "https://sso.canvaslms.com/api/lti/security/jwks"

[[platforms]]
issuer = "https://d2l.example.edu"
client_id = "6f1e2a4b"
deployment_ids = ["d1", "d2"]
auth_login_url = "https://d2l.example.edu/d2l/lti/authenticate"
token_url = "https://auth.lms-vendor.example/core/connect/token"
key_set_url = "https://d2l.example.edu/d2l/.well-known/jwks"
token_audience = "https://api.lms-vendor.example/auth/token"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lti.toml"
    path.write_text(text)
    return path


def test_toml_file_gives_the_same_config_as_python(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, TOML))

    assert config.leeway == 30.0
    assert config.private_key_files == (tmp_path / "keys" / "tool.pem",)
    assert [r.client_id for r in config.registrations] == ["10000000000042", "6f1e2a4b"]
    d2l = config.registrations[1]
    assert d2l.deployment_ids == ("d1", "d2")
    assert d2l.token_audience == "https://api.lms-vendor.example/auth/token"
    assert config.allowed_target_origins == ("https://tool.example.org",)
    assert config.landing_url == "https://tool.example.org/"


def test_config_file_named_by_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV_VAR, str(write(tmp_path, TOML)))
    assert len(load_config().registrations) == 2


def test_unset_environment_variable_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    with pytest.raises(ConfigurationError) as error:
        load_config()
    assert error.value.key == CONFIG_ENV_VAR


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (
            ('token_url = "https://sso', 'token_url = "ftp://sso'),
            "platforms[0].token_url",
        ),
        (("leeway = 30", "leeway = 900"), "tool.leeway"),
        (("leeway = 30", 'leeway = "soon"'), "tool.leeway"),
        (("leeway = 30", 'colour = "red"'), "tool.colour"),
        (('client_id = "6f1e2a4b"', 'client_id = ""'), "platforms[1].client_id"),
        (
            ('client_id = "6f1e2a4b"', 'client_id = " 6f1e2a4b"'),
            "platforms[1].client_id",
        ),
        (
            ('deployment_ids = ["d1", "d2"]', 'deployment_ids = "d1"'),
            "platforms[1].deployment_ids",
        ),
        (('login_url = "https://tool', 'login_url = "http://tool'), "tool.login_url"),
        (
            (
                'launch_url = "https://tool.example.org/lti/launch"',
                'launch_url = "https://tool.example.org/lti/launch?x=1"',
            ),
            "tool.launch_url",
        ),
        (("leeway = 30", 'allowed_algorithms = ["HS256"]'), "tool.allowed_algorithms"),
        (("leeway = 30", 'allowed_algorithms = ["none"]'), "tool.allowed_algorithms"),
        (("leeway = 30", 'deployment_policy = "maybe"'), "tool.deployment_policy"),
        (("leeway = 30", "login_ttl = 0"), "tool.login_ttl"),
    ],
)
def test_bad_value_fails_naming_the_key(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    text = TOML.replace(*change, 1)
    assert text != TOML
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    assert error.value.key == key


def test_missing_platform_key_is_named(tmp_path: Path) -> None:
    text = TOML.replace(
        'key_set_url = "https://sso.canvaslms.com/api/lti/security/jwks"', ""
    )
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    assert error.value.key == "platforms[0]"
    assert "key_set_url" in str(error.value)


def test_duplicate_registration_refused() -> None:
    with pytest.raises(ConfigurationError) as error:
        tool_config(registrations=(registration(), registration()))
    assert error.value.key == "platforms"


def test_shared_issuer_with_distinct_client_ids_allowed() -> None:
    config = tool_config(registrations=(registration(), registration(client_id="2")))
    assert len(config.registrations) == 2


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool\n")
    with pytest.raises(ConfigurationError) as error:
        load_config(path)
    assert error.value.key == str(path)


def test_http_is_allowed_only_for_localhost() -> None:
    local: dict[str, Any] = {
        "login_url": "http://127.0.0.1:8000/lti/login",
        "launch_url": "http://localhost:8000/lti/launch",
        "jwks_url": "http://127.0.0.1:8000/lti/jwks",
    }
    assert tool_config(**local).launch_url == "http://localhost:8000/lti/launch"


def test_nonce_memory_covers_every_acceptable_token() -> None:
    config = tool_config(max_token_age=600, leeway=60)
    # A token is accepted up to max_token_age + leeway after iat; the used
    # nonce must outlive that.
    assert config.nonce_memory >= 600 + 60


def test_registration_defaults_name_from_issuer_and_client_id() -> None:
    assert registration().name == f"{ISS} 10000000000042"


def test_plugin_tables_reach_the_config(tmp_path: Path) -> None:
    text = TOML + '\n[plugins.redis]\nurl = "redis://127.0.0.1:6379/0"\n'
    config = load_config(write(tmp_path, text))
    assert config.plugin_settings == {"redis": {"url": "redis://127.0.0.1:6379/0"}}


def test_plugin_table_must_be_a_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, 'plugins = "redis"\n' + TOML))
    assert error.value.key == "plugins"


@pytest.mark.parametrize("value", [0, 0.01, 61, "10"])
def test_http_timeout_is_bounded(tmp_path: Path, value: object) -> None:
    text = TOML.replace("leeway = 30", f"http_timeout = {value!r}".replace("'", '"'))
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    assert error.value.key == "tool.http_timeout"


def test_service_retry_settings_have_defaults_and_come_from_toml(
    tmp_path: Path,
) -> None:
    assert (tool_config().service_retries, tool_config().service_retry_deadline) == (
        3,
        30.0,
    )

    text = TOML.replace(
        "leeway = 30", "service_retries = 0\nservice_retry_deadline = 120"
    )
    config = load_config(write(tmp_path, text))

    assert (config.service_retries, config.service_retry_deadline) == (0, 120.0)
    assert isinstance(config.service_retry_deadline, float)


@pytest.mark.parametrize("value", ["-1", "11", "1.5", "true", '"3"'])
def test_service_retries_is_a_bounded_count(tmp_path: Path, value: str) -> None:
    text = TOML.replace("leeway = 30", f"service_retries = {value}")
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    assert error.value.key == "tool.service_retries"


@pytest.mark.parametrize("value", ["-1", "0", "0.5", "301", "true", '"30"'])
def test_service_retry_deadline_is_bounded(tmp_path: Path, value: str) -> None:
    text = TOML.replace("leeway = 30", f"service_retry_deadline = {value}")
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    assert error.value.key == "tool.service_retry_deadline"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("service_retries", 11, "tool.service_retries"),
        ("service_retry_deadline", 0, "tool.service_retry_deadline"),
    ],
)
def test_service_retry_settings_are_checked_in_python_too(
    name: str, value: object, key: str
) -> None:
    with pytest.raises(ConfigurationError) as error:
        tool_config(**{name: value})
    assert error.value.key == key


@pytest.mark.parametrize(
    "key",
    [
        "leeway",
        "max_token_age",
        "max_token_lifetime",
        "login_ttl",
        "launch_ttl",
        "http_timeout",
        "service_retry_deadline",
    ],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_seconds_must_be_finite(tmp_path: Path, key: str, value: str) -> None:
    # NaN compares false with every bound: "leeway = nan" once loaded and
    # then accepted tokens that had expired a day before.
    text = TOML.replace("leeway = 30", f"{key} = {value}")

    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))

    assert error.value.key == f"tool.{key}"
    assert "finite" in str(error.value)
