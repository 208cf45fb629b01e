"""The development platform's course page and platform storage side."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import pytest

from lti_middleware.devplatform.storage import COURSE_PATH, TOOL_FRAME

from .test_devplatform import TOOL, Clock, Dev, ToolKeys, make_settings


@pytest.fixture
async def storage_dev() -> AsyncIterator[Dev]:
    clock = Clock()
    platform = Dev(make_settings(clock, platform_storage=True), clock, ToolKeys())
    yield platform
    await platform.aclose()


@pytest.fixture
async def plain_dev() -> AsyncIterator[Dev]:
    clock = Clock()
    platform = Dev(make_settings(clock), clock, ToolKeys())
    yield platform
    await platform.aclose()


async def test_course_page_embeds_the_tool_and_targets_launches_into_it(
    storage_dev: Dev,
) -> None:
    response = await storage_dev.http.get(COURSE_PATH)

    assert response.status_code == 200
    assert f'<iframe name="{TOOL_FRAME}"' in response.text
    launches = re.findall(r'<a href="([^"]+)" target="([^"]+)">', response.text)
    assert launches
    assert all(target == TOOL_FRAME for _, target in launches)
    assert all(href.startswith(storage_dev.settings.launch_url) for href, _ in launches)


async def test_course_page_scripts_run_under_a_nonce_and_know_the_tool_origin(
    storage_dev: Dev,
) -> None:
    response = await storage_dev.http.get(COURSE_PATH)

    csp = response.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None
    assert f'<script nonce="{nonce.group(1)}">' in response.text
    assert f"frame-src {TOOL} 'self'" in csp
    block = re.search(r'id="storage-data">(.*?)</script>', response.text)
    assert block is not None
    assert json.loads(block.group(1)) == {"tool_origin": TOOL}


async def test_login_and_launch_carry_the_storage_target(storage_dev: Dev) -> None:
    login = await storage_dev.start_login()
    form = await storage_dev.authorize(storage_dev.auth_params(login))

    assert login["lti_storage_target"] == "_parent"
    assert form.fields["lti_storage_target"] == "_parent"
    assert set(form.fields) == {"id_token", "state", "lti_storage_target"}


async def test_without_platform_storage_no_target_is_sent(plain_dev: Dev) -> None:
    dev = plain_dev
    login = await dev.start_login()
    form = await dev.authorize(dev.auth_params(login))

    assert "lti_storage_target" not in login
    assert "lti_storage_target" not in form.fields
    page = await dev.http.get(COURSE_PATH)
    assert "Platform storage is off" in page.text
