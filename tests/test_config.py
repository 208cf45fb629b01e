"""Configuration: Python objects, TOML files, and start-up errors naming keys."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lti_middleware.config import CONFIG_ENV_VAR, DURATION_RANGES, load_config
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


# -- Every value either works or is refused under its own key ----------------

DURATIONS = list(DURATION_RANGES)
URL_KEYS = [
    "tool.login_url",
    "tool.launch_url",
    "tool.jwks_url",
    "tool.landing_url",
    "tool.allowed_target_origins",
    "platforms[0].auth_login_url",
    "platforms[0].token_url",
    "platforms[0].key_set_url",
]


def with_value(
    name: str, value: str, text: str = TOML, *, section: str = "[tool]"
) -> str:
    """``text`` with the first ``name = ...`` line set to ``value``.

    A key the file does not have yet is added at the top of ``section`` (the
    first one of that name).
    """
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.startswith(f"{name} = "):
            lines[index] = f"{name} = {value}"
            return "\n".join(lines)
    return text.replace(f"{section}\n", f"{section}\n{name} = {value}\n", 1)


def refused_key(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, text))
    return error.value.key


def url_setting(key: str, url: str) -> tuple[str, str]:
    """The TOML line name and value that put ``url`` under ``key``."""
    name = key.rpartition(".")[2]
    value = json.dumps(url)
    return name, f"[{value}]" if name == "allowed_target_origins" else value


@pytest.mark.parametrize("key", DURATIONS)
@pytest.mark.parametrize(
    "value",
    ["1" + "0" * 400, "-1" + "0" * 400, "0x" + "f" * 5000, "1e17", "1e308", "-1"],
)
def test_seconds_out_of_range_are_refused_under_their_key(
    tmp_path: Path, key: str, value: str
) -> None:
    # A 401-digit int once escaped as OverflowError from math.isfinite, and
    # 1e17 seconds loaded, then failed every Redis SET with a 503.
    assert refused_key(tmp_path, with_value(key, value)) == f"tool.{key}"


@pytest.mark.parametrize("key", DURATIONS)
def test_seconds_at_either_end_of_their_range_load(tmp_path: Path, key: str) -> None:
    least, most = DURATION_RANGES[key]

    for value in (least, most):
        config = load_config(write(tmp_path, with_value(key, repr(value))))
        assert getattr(config, key) == value

    for outside in (least - 0.01, most + 0.01):
        text = with_value(key, repr(outside))
        assert refused_key(tmp_path, text) == f"tool.{key}", outside


@pytest.mark.parametrize(
    ("key", "value"),
    [("login_ttl", 0.5), ("launch_ttl", 0.5), ("max_token_age", 0.5)],
)
def test_seconds_below_one_are_refused_where_they_cannot_work(
    key: str, value: float
) -> None:
    # login_ttl 0.5 gave the state cookie Max-Age=0: the browser dropped it.
    with pytest.raises(ConfigurationError) as error:
        tool_config(**{key: value})
    assert error.value.key == f"tool.{key}"
    assert "1 to" in str(error.value)


def test_a_huge_int_from_python_is_refused_with_a_short_message() -> None:
    with pytest.raises(ConfigurationError) as error:
        tool_config(leeway=10**5000)

    assert error.value.key == "tool.leeway"
    assert "an integer of about 5001 digits" in str(error.value)
    assert len(str(error.value)) < 200


@pytest.mark.parametrize(
    "text",
    [
        with_value("leeway", "9" * 4301),
        with_value("client_id", "9" * 5000),
        TOML + "\n[plugins.redis]\ndb = " + "1" * 4400 + "\n",
        with_value("leeway", "[" * 2000 + "]" * 2000),
    ],
    ids=["tool", "platform", "plugin", "nested"],
)
def test_unreadable_toml_names_the_file(tmp_path: Path, text: str) -> None:
    # tomllib raises plain ValueError past 4,300 digits and RecursionError
    # on deep nesting; both must come out as the file's ConfigurationError.
    path = write(tmp_path, text)
    assert refused_key(tmp_path, text) == str(path)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lti.toml"
    path.write_bytes(
        TOML.replace("tool.example.org", "tool\xe9.example.org").encode("latin-1")
    )

    with pytest.raises(ConfigurationError) as error:
        load_config(path)

    assert error.value.key == str(path)
    assert "UTF-8" in str(error.value)


@pytest.mark.parametrize("key", URL_KEYS)
@pytest.mark.parametrize(
    "url",
    [
        "https://[::1/",
        "https://[::1",
        "https://tool.example.org:99999/lti",
        "https://tool.example.org:0/lti",
        "https://exa mple.org/lti",
        "https://tool.example.org/l\u0000ti",
        "https://tool.example.org/l\tti",
        "https://tool.example.org/l\r\nti",
        "https://user:secret@tool.example.org/lti",
    ],
)
def test_broken_urls_are_refused_under_their_key(
    tmp_path: Path, key: str, url: str
) -> None:
    name, value = url_setting(key, url)

    with pytest.raises(ConfigurationError) as error:
        load_config(write(tmp_path, with_value(name, value)))

    assert error.value.key == key
    assert "secret" not in str(error.value)


def test_a_platform_with_a_name_is_still_named_by_its_section(tmp_path: Path) -> None:
    named = with_value("name", '"Canvas"', section="[[platforms]]")
    assert load_config(write(tmp_path, named)).registrations[0].name == "Canvas"

    broken = with_value("key_set_url", '"https://[::1/"', named)

    assert refused_key(tmp_path, broken) == "platforms[0].key_set_url"


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("name", '""', "platforms[0].name"),
        ("name", "5", "platforms[0].name"),
        ("trusted_audiences", "[1]", "platforms[0].trusted_audiences"),
        ("trusted_audiences", '[""]', "platforms[0].trusted_audiences"),
        ("deployment_ids", "[[]]", "platforms[0].deployment_ids"),
    ],
)
def test_bad_platform_entries_are_refused_under_their_key(
    tmp_path: Path, name: str, value: str, key: str
) -> None:
    text = with_value(name, value, section="[[platforms]]")
    assert refused_key(tmp_path, text) == key


@pytest.mark.parametrize(
    "value", ["[1]", "[[]]", "[{}]", '[""]', '["keys/a\\u0000b.pem"]', "[true]"]
)
def test_private_key_files_must_be_paths(tmp_path: Path, value: str) -> None:
    assert refused_key(tmp_path, with_value("private_key_files", value)) == (
        "tool.private_key_files"
    )


@pytest.mark.parametrize("value", ["tool.pem", b"tool.pem", [b"tool.pem"], 5])
def test_private_key_files_from_python_must_be_a_list_of_paths(value: object) -> None:
    # A lone string would be read as one file per character.
    with pytest.raises(ConfigurationError) as error:
        tool_config(private_key_files=value)
    assert error.value.key == "tool.private_key_files"


def test_private_key_files_accept_strings_and_paths() -> None:
    config = tool_config(private_key_files=["a.pem", Path("/keys/b.pem")])
    assert config.private_key_files == (Path("a.pem"), Path("/keys/b.pem"))


@pytest.mark.parametrize("value", ['[["RS256"]]', "[{}]", "[1]", '["RS256", []]'])
def test_allowed_algorithms_entries_must_be_names(tmp_path: Path, value: str) -> None:
    key = refused_key(tmp_path, with_value("allowed_algorithms", value))
    assert key == "tool.allowed_algorithms"


@pytest.mark.parametrize(
    "value",
    [
        "5",
        "[]",
        "{}",
        "true",
        '""',
        '" "',
        '" lti-tool"',
        '"caf\\u00e9/1.0"',
        '"a\\r\\nX-Injected: 1"',
        '"a\\tb"',
        '"\\u0000"',
        '"\\u007f"',
        json.dumps("A" * 201),
    ],
)
def test_user_agent_must_be_a_short_printable_ascii_header(
    tmp_path: Path, value: str
) -> None:
    # Each of these loaded before, then failed every platform call.
    assert refused_key(tmp_path, with_value("user_agent", value)) == "tool.user_agent"


@pytest.mark.parametrize(
    "agent", ["A" * 200, "x", "my-tool/2.0 (+https://tool.example.org; ops@x.org)"]
)
def test_printable_ascii_user_agents_load(tmp_path: Path, agent: str) -> None:
    config = load_config(write(tmp_path, with_value("user_agent", json.dumps(agent))))
    assert config.user_agent == agent


@pytest.mark.parametrize(
    "origin",
    [
        "https://tool.example.org/app",
        "https://tool.example.org/app/",
        "https://tool.example.org/?x=1",
        "https://tool.example.org#top",
        "https://tool.example.org:8443/lti/launch",
    ],
)
def test_allowed_target_origins_refuse_more_than_an_origin(
    tmp_path: Path, origin: str
) -> None:
    # "https://tool.example.org/app" loaded, then matched no target at all.
    text = with_value("allowed_target_origins", json.dumps([origin]))
    assert refused_key(tmp_path, text) == "tool.allowed_target_origins"


def test_allowed_target_origins_are_kept_as_origins(tmp_path: Path) -> None:
    origins = ["https://tool.example.org/", "https://app.example.org:8443"]
    text = with_value("allowed_target_origins", json.dumps(origins))

    config = load_config(write(tmp_path, text))

    assert config.allowed_target_origins == (
        "https://tool.example.org",
        "https://app.example.org:8443",
    )


@pytest.mark.parametrize("value", ['""', "[]", "5", "{}", '"/relative"'])
def test_landing_url_given_must_be_a_url(tmp_path: Path, value: str) -> None:
    # "" and [] once meant "use the default" without a word.
    assert refused_key(tmp_path, with_value("landing_url", value)) == "tool.landing_url"


def test_landing_url_absent_or_none_is_the_default() -> None:
    assert tool_config().landing_url == "https://tool.example.org/"
    assert tool_config(landing_url=None).landing_url == "https://tool.example.org/"


@pytest.mark.parametrize(
    ("name", "url", "key"),
    [
        ("launch_url", "https://tool.example.org/lti/login", "tool.launch_url"),
        ("jwks_url", "https://other.example.org/lti/launch", "tool.jwks_url"),
        ("jwks_url", "https://tool.example.org", "tool.jwks_url"),
        ("login_url", "https://tool.example.org", "tool.login_url"),
    ],
)
def test_tool_urls_need_paths_of_their_own(
    tmp_path: Path, name: str, url: str, key: str
) -> None:
    # The middleware routes on the path: a shared one serves only one route.
    assert refused_key(tmp_path, with_value(name, json.dumps(url))) == key


@pytest.mark.parametrize(
    "value", ["1023", "1048577", "65536.0", "true", "1" + "0" * 400]
)
def test_max_body_bytes_is_bounded(tmp_path: Path, value: str) -> None:
    assert refused_key(tmp_path, with_value("max_body_bytes", value)) == (
        "tool.max_body_bytes"
    )


def test_a_valid_config_survives_replace() -> None:
    # Plugins and tests derive configs with dataclasses.replace, which checks
    # the normalised values again.
    config = tool_config(allowed_target_origins=["https://tool.example.org/"])

    again = replace(config, user_agent="other/1.0")

    assert again.allowed_target_origins == config.allowed_target_origins
    assert again.landing_url == config.landing_url
    assert again.leeway == config.leeway


@pytest.mark.parametrize("name", DURATIONS)
def test_readme_states_each_duration_range(name: str) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
    least, most = DURATION_RANGES[name]

    if least == 0:
        assert f"max {most:.0f}" in row, row
    else:
        assert f"{least:g} to {most:.0f}" in row, row
