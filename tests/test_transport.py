"""The bounded reader and the scrubber every platform exchange goes through."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from urllib.parse import quote, urlencode

import httpx
import pytest

from lti_middleware.exceptions import ServiceError
from lti_middleware.transport import (
    REDACTED,
    _decoded,
    scrubbed,
    scrubbed_error,
    secrets_of,
    send_bounded,
    time_limit_of,
)

URL = "https://lms.example.edu/api/lti/courses/5/line_items"
REQUEST = httpx.Request("GET", URL)
TOKEN = "tok+en/with=odd~chars.123"


def test_gzip_members_one_after_another_are_all_read() -> None:
    body = gzip.compress(b"first ") + gzip.compress(b"second")

    assert _decoded(body, "gzip", 100, REQUEST) == b"first second"


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_deflate_is_read_zlib_wrapped_or_raw(wbits: int) -> None:
    packer = zlib.compressobj(wbits=wbits)
    body = packer.compress(b"deflated") + packer.flush()

    assert _decoded(body, "deflate", 100, REQUEST) == b"deflated"


def test_inflating_stops_at_the_limit() -> None:
    body = gzip.compress(bytes(10_000))

    with pytest.raises(ServiceError, match="more than 1000 bytes"):
        _decoded(body, "gzip", 1000, REQUEST)


def test_exactly_the_limit_is_read() -> None:
    assert len(_decoded(gzip.compress(bytes(1000)), "gzip", 1000, REQUEST)) == 1000


@pytest.mark.parametrize(
    "body", [b"not gzip at all", gzip.compress(b"cut short")[:-6], b"\x1f\x8b"]
)
def test_a_body_that_does_not_decompress_is_refused(body: bytes) -> None:
    with pytest.raises(ServiceError, match="does not decompress"):
        _decoded(body, "gzip", 1000, REQUEST)


def test_a_coding_not_asked_for_is_refused() -> None:
    with pytest.raises(ServiceError, match="content coding 'br'"):
        _decoded(b"...", "br", 1000, REQUEST)


async def test_redirects_are_not_followed_whatever_the_client_says() -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(307, headers={"location": "https://elsewhere.example/"})

    transport = httpx.MockTransport(answer)
    async with httpx.AsyncClient(transport=transport, follow_redirects=True) as http:
        response = await send_bounded(http, http.build_request("GET", URL), 1000)

    assert response.status_code == 307
    assert seen == [URL]


async def test_only_gzip_and_deflate_are_asked_for() -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers["accept-encoding"])
        return httpx.Response(200)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await send_bounded(http, http.build_request("GET", URL), 1000)

    assert asked == ["gzip, deflate"]


def test_a_client_without_timeouts_still_gets_a_bound() -> None:
    assert time_limit_of(httpx.Request("GET", URL)) == 60.0
    timed = httpx.Request("GET", URL, extensions={"timeout": {"read": 2.5}})
    assert time_limit_of(timed) == 2.5


@pytest.mark.parametrize(
    "echo",
    [
        TOKEN,
        quote(TOKEN, safe=""),
        json.dumps({"t": TOKEN}),
        json.dumps(TOKEN).replace("/", "\\/"),
        base64.b64encode(TOKEN.encode()).decode(),
        base64.urlsafe_b64encode(TOKEN.encode()).decode().rstrip("="),
        urlencode({"access_token": TOKEN}),
    ],
)
def test_a_secret_is_scrubbed_in_every_usual_spelling(echo: str) -> None:
    text = scrubbed(f"the platform said: {echo} (end)", TOKEN)

    assert REDACTED in text
    for spelling in (TOKEN, quote(TOKEN, safe=""), "tok+en", "dG9rK2Vu"):
        assert spelling not in text


def test_the_credentials_a_request_carried_are_found() -> None:
    bearer = httpx.Request("POST", URL, headers={"Authorization": f"Bearer {TOKEN}"})
    form = httpx.Request(
        "POST", URL, data={"grant_type": "x", "client_assertion": "a.b.c"}
    )

    assert secrets_of(bearer) == (TOKEN,)
    assert secrets_of(form) == ("a.b.c",)
    assert secrets_of(None) == ()


def test_an_httpx_error_quoting_a_secret_is_rebuilt_without_it() -> None:
    request = httpx.Request("GET", URL, headers={"Authorization": f"Bearer {TOKEN}"})
    error = httpx.RemoteProtocolError(
        f"illegal header line: {TOKEN!r}", request=request
    )

    clean = scrubbed_error(error)

    assert isinstance(clean, httpx.RemoteProtocolError)
    assert TOKEN not in str(clean)
    assert clean.request is request


def test_an_httpx_error_without_a_secret_is_kept_as_it_is() -> None:
    error = httpx.ConnectError("refused", request=REQUEST)

    assert scrubbed_error(error) is error
