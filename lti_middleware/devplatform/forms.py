"""Reading request parameters strictly: one value per name, known encodings."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024


class FormError(Exception):
    """The request's parameters could not be read; the message says why."""


def media_type(request: Request) -> str:
    """The request's Content-Type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body; raises FormError past ``limit`` bytes."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormError(f"the body is larger than {limit} bytes")

    return bytes(body)


async def read_form(request: Request) -> dict[str, str]:
    """The urlencoded body of a POST; raises FormError on anything else.

    A name given twice is refused rather than resolved by a guess.
    """
    if media_type(request) != FORM_MEDIA_TYPE:
        raise FormError(f"expected Content-Type {FORM_MEDIA_TYPE}")
    try:
        text = (await read_body(request)).decode("utf-8")
    except UnicodeDecodeError as error:
        raise FormError("the body is not UTF-8") from error

    return _unique(parse_qsl(text, keep_blank_values=True))


async def read_params(request: Request) -> dict[str, str]:
    """The query of a GET, or the form body of a POST."""
    if request.method == "POST":
        return await read_form(request)

    return _unique(request.query_params.multi_items())


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise FormError(f"parameter {name!r} given more than once")
        params[name] = value

    return params
