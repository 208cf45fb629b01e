"""HTTP to a platform: bounded answers and log-safe addresses.

Shared by the token client, the service session and whatever else calls a
platform, so every answer read from one is capped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx

from .exceptions import ServiceError

#: Put in place of a secret the platform echoed back in an error body.
REDACTED = "[redacted]"


def scrubbed(text: str, *secrets: str) -> str:
    """``text`` with every one of ``secrets`` in it replaced by REDACTED.

    Some platforms echo the request in their error answers; the access token
    or client assertion must not reach an exception message or a log.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


@contextlib.asynccontextmanager
async def whole_exchange_within(
    seconds: float | None, request: httpx.Request
) -> AsyncIterator[None]:
    """Bound a whole exchange, answer body included, by ``seconds``.

    httpx's timeouts bound each step (connect, each read), so a platform
    that trickles its answer a byte at a time would hold the caller for as
    long as it likes. Raises httpx.ReadTimeout, so callers treat it as any
    other timeout.
    """
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise httpx.ReadTimeout(
            f"no complete answer within {seconds:g}s", request=request
        ) from error


def time_limit_of(request: httpx.Request) -> float | None:
    """The longest of the request's httpx timeouts: the client's setting."""
    timeout = request.extensions.get("timeout") or {}
    limits = [v for v in timeout.values() if isinstance(v, int | float)]
    return max(limits) if limits else None


def where(url: str) -> str:
    """Host and path of ``url``, for logs (no query: it may carry ids)."""
    parts = urlsplit(url)
    return parts.netloc + parts.path


async def send_bounded(
    http: httpx.AsyncClient, request: httpx.Request, limit: int
) -> httpx.Response:
    """Send ``request`` and read at most ``limit`` bytes of the answer.

    Raises ServiceError for a larger body: a platform (or whatever answers
    in its place) must not make the tool hold gigabytes in memory. The whole
    exchange must end within the request's timeout (the client's
    ``http_timeout``), not only each read.
    """
    async with whole_exchange_within(time_limit_of(request), request):
        response = await http.send(request, stream=True)
        if _declared_within(response, limit):
            # The usual answer: its length is declared, small, not
            # compressed, and HTTP framing stops the read at that length.
            await response.aread()
            return response
        try:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    raise ServiceError(
                        f"{request.method} {where(str(request.url))} answered with "
                        f"more than {limit} bytes; refusing to read it"
                    )
        finally:
            await response.aclose()

    # The body is decoded already: drop the headers that described it raw.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=bytes(body), request=request
    )


def _declared_within(response: httpx.Response, limit: int) -> bool:
    """True when the answer's declared length is its whole size and fits."""
    if response.headers.get("content-encoding", "identity").lower() != "identity":
        return False
    # With Transfer-Encoding the length header does not frame the body.
    if "transfer-encoding" in response.headers:
        return False
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) <= limit
