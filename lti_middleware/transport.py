"""HTTP to a platform: bounded answers and log-safe addresses.

Shared by the token client, the service session and whatever else calls a
platform, so every answer read from one is capped the same way.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .exceptions import ServiceError


def where(url: str) -> str:
    """Host and path of ``url``, for logs (no query: it may carry ids)."""
    parts = urlsplit(url)
    return parts.netloc + parts.path


async def send_bounded(
    http: httpx.AsyncClient, request: httpx.Request, limit: int
) -> httpx.Response:
    """Send ``request`` and read at most ``limit`` bytes of the answer.

    Raises ServiceError for a larger body: a platform (or whatever answers
    in its place) must not make the tool hold gigabytes in memory.
    """
    response = await http.send(request, stream=True)
    try:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > limit:
                raise ServiceError(
                    f"{request.method} {where(str(request.url))} answered with more "
                    f"than {limit} bytes; refusing to read it"
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
