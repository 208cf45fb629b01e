"""The service session's reading of Link headers (RFC 8288)."""

from __future__ import annotations

import httpx
import pytest

from lti_middleware.exceptions import ServiceError
from lti_middleware.services import ServiceSession

BASE = "https://lms.example.edu/api/items?page=1"


def link_of(header: str, rel: str) -> str | None:
    session = ServiceSession.__new__(ServiceSession)
    request = httpx.Request("GET", BASE)
    response = httpx.Response(200, headers={"link": header}, request=request)
    return session.link(response, rel, BASE)


@pytest.mark.parametrize(
    "header",
    [
        '<https://lms.example.edu/api/items?page=2>; rel="next"',
        '<https://lms.example.edu/api/items?page=2>; rel="next last"',
        '<https://lms.example.edu/api/items?page=2>; rel="NEXT"',
        '<https://lms.example.edu/api/items?page=1>; rel="first", '
        "<https://lms.example.edu/api/items?page=2>; rel=next",
        '</api/items?page=2>; rel="next"',
        '<https://lms.example.edu/api/items?page=2>; title="a=b"; rel="next"',
        '<https://lms.example.edu/api/items?page=1>; title="a, b"; rel="first",'
        ' <https://lms.example.edu/api/items?page=2>; rel="next"',
    ],
)
def test_next_link_is_found_in_every_spelling(header: str) -> None:
    assert link_of(header, "next") == "https://lms.example.edu/api/items?page=2"


def test_links_in_several_headers_are_all_read() -> None:
    session = ServiceSession.__new__(ServiceSession)
    headers = [
        ("Link", '<https://lms.example.edu/api/items?page=1>; rel="first"'),
        ("LINK", '<https://lms.example.edu/api/items?page=2>; rel="next"'),
    ]
    response = httpx.Response(200, headers=headers, request=httpx.Request("GET", BASE))
    assert session.link(response, "next", BASE) == (
        "https://lms.example.edu/api/items?page=2"
    )


def test_absent_relation_is_none() -> None:
    header = '<https://lms.example.edu/api/items?page=1>; rel="first"'
    assert link_of(header, "next") is None


def test_next_url_is_kept_verbatim() -> None:
    odd = "https://lms.example.edu/api/items?b=2&a=1&cursor=x%2Fy"
    assert link_of(f'<{odd}>; rel="next"', "next") == odd


def test_a_hostile_link_header_is_read_in_linear_time() -> None:
    # Quadratic parsing of this took seconds per page (ReDoS); now it is
    # refused by length, and a long header under the cap parses at once.
    from lti_middleware.services import MAX_LINK_HEADER, parse_links

    with pytest.raises(ValueError):
        parse_links(["<" + "a" * MAX_LINK_HEADER])
    assert parse_links(["<a" * (MAX_LINK_HEADER // 3)]) == []


async def test_a_huge_answer_is_refused_not_read() -> None:
    from lti_middleware.exceptions import ServiceError
    from lti_middleware.transport import send_bounded

    def serve(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 5000)

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    with pytest.raises(ServiceError, match="more than 1000 bytes"):
        await send_bounded(http, http.build_request("GET", BASE), 1000)


async def test_a_compressed_answer_is_read_once_decoded() -> None:
    import gzip

    from lti_middleware.transport import send_bounded

    def serve(request: httpx.Request) -> httpx.Response:
        body = gzip.compress(b'{"a": 1}')
        return httpx.Response(200, content=body, headers={"content-encoding": "gzip"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(serve))
    response = await send_bounded(http, http.build_request("GET", BASE), 1000)
    assert response.json() == {"a": 1}


async def test_a_declared_small_answer_is_returned_as_it_came() -> None:
    from lti_middleware.transport import send_bounded

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        response = await send_bounded(http, http.build_request("GET", BASE), 1000)

    assert response.json() == {"ok": True}
    assert response.headers["content-length"] == str(len(response.content))


async def test_a_declared_length_over_the_limit_is_refused() -> None:
    from lti_middleware.transport import send_bounded

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * 2000)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        with pytest.raises(ServiceError, match="more than 1000 bytes"):
            await send_bounded(http, http.build_request("GET", BASE), 1000)
