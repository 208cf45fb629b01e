"""Claim URIs and other spec strings are spelled exactly."""

from __future__ import annotations

import re

from lti_middleware import claims as c


def _constants() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(c).items()
        if name.isupper() and isinstance(value, str)
    }


def test_constants_carry_no_whitespace() -> None:
    for name, value in _constants().items():
        assert not re.search(r"\s", value), name


def test_claims_use_https_and_roles_use_http() -> None:
    for name, value in _constants().items():
        if name.endswith("_ROLE"):
            assert value.startswith("http://purl.imsglobal.org/vocab/lis/v2/"), name
        elif value.startswith("http"):
            assert value.startswith("https://purl.imsglobal.org/spec/"), name


def test_exact_values_of_the_easily_mistyped() -> None:
    assert c.MEDIA_TYPE_SCORE == "application/vnd.ims.lis.v1.score+json"
    assert c.SCOPE_SCORE == "https://purl.imsglobal.org/spec/lti-ags/scope/score"
    assert c.DEPLOYMENT_ID == "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
    assert c.AGS_ENDPOINT == "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
    assert c.MEMBERSHIP_ROLE == "http://purl.imsglobal.org/vocab/lis/v2/membership#"
