"""HTTP to a platform: bounded answers, no redirects, log-safe text.

Shared by the key set fetch, the token client and the service session, so
every exchange with a platform is bounded the same way: in time (the whole
exchange, not each read), in size (after decompression, not before), and in
where it goes (never where a redirect points). Text a platform sends back is
scrubbed of the secrets the request carried before it reaches an error.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import zlib
from collections.abc import AsyncIterator, Iterable
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

import httpx

from .exceptions import ServiceError

#: Put in place of a secret the platform echoed back.
REDACTED = "[redacted]"
#: The content codings this tool asks for and decodes itself, with a bound.
ACCEPTED_ENCODINGS = "gzip, deflate"
#: An exchange on a client with no timeout of its own ends after this long
#: (the largest ``http_timeout`` the configuration allows).
MAX_EXCHANGE_SECONDS = 60.0


def where(url: str) -> str:
    """Host and path of ``url``, for logs (no query: it may carry ids)."""
    parts = urlsplit(url)
    return parts.netloc + parts.path


# --- secrets ------------------------------------------------------------------


def _spellings(secret: str) -> Iterable[str]:
    """The ways a platform might echo ``secret``: as sent, and re-encoded."""
    yield secret
    yield quote(secret, safe="")
    yield quote_plus(secret)
    escaped = json.dumps(secret)[1:-1]
    yield escaped
    yield escaped.replace("/", "\\/")
    raw = secret.encode()
    yield base64.b64encode(raw).decode().rstrip("=")
    yield base64.urlsafe_b64encode(raw).decode().rstrip("=")


def scrubbed(text: str, *secrets: str) -> str:
    """``text`` with every spelling of each of ``secrets`` replaced.

    Some platforms echo the request in their error answers; the access token
    or client assertion must not reach an exception message or a log.
    """
    for secret in secrets:
        if not secret:
            continue
        for spelling in sorted(set(_spellings(secret)), key=len, reverse=True):
            text = text.replace(spelling, REDACTED)
    return text


def secrets_of(request: httpx.Request | None) -> tuple[str, ...]:
    """The credentials ``request`` carried: a bearer token, a client assertion."""
    if request is None:
        return ()

    found: list[str] = []
    authorization = request.headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        found.append(authorization[7:].strip())
    if request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        try:
            content = request.content
        except httpx.RequestNotRead:
            content = b""
        form = parse_qs(content.decode("utf-8", "replace"))
        found.extend(form.get("client_assertion", []))
    return tuple(found)


def platform_text(response: httpx.Response, limit: int) -> str:
    """What the platform said, cut to ``limit`` characters, secrets removed."""
    return scrubbed(response.text, *secrets_of(response.request))[:limit]


def scrubbed_error(error: httpx.HTTPError) -> httpx.HTTPError | None:
    """``error`` again if its text is clean; a scrubbed copy; or None.

    httpx quotes what the platform sent in some errors (a malformed header
    line); a cause chained as it is would carry a secret into tracebacks.
    """
    try:
        request: httpx.Request | None = error.request
    except RuntimeError:
        request = None
    text = str(error)
    clean = scrubbed(text, *secrets_of(request))
    if clean == text:
        return error
    try:
        return type(error)(clean, request=request)  # type: ignore[call-arg]
    except TypeError:
        return None


# --- time ---------------------------------------------------------------------


@contextlib.asynccontextmanager
async def whole_exchange_within(
    seconds: float, request: httpx.Request
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


def time_limit_of(request: httpx.Request) -> float:
    """The longest of the request's httpx timeouts (the client's setting).

    A client made without timeouts still gets MAX_EXCHANGE_SECONDS.
    """
    timeout = request.extensions.get("timeout") or {}
    limits = [v for v in timeout.values() if isinstance(v, int | float)]
    return min(max(limits), MAX_EXCHANGE_SECONDS) if limits else MAX_EXCHANGE_SECONDS


# --- size ---------------------------------------------------------------------


async def send_bounded(
    http: httpx.AsyncClient, request: httpx.Request, limit: int
) -> httpx.Response:
    """Send ``request`` and read at most ``limit`` bytes of the decoded answer.

    Raises ServiceError for a larger body: a platform (or whatever answers
    in its place) must not make the tool hold gigabytes in memory. The body
    is decompressed here, a layer at a time with a bound, not by httpx,
    which inflates a whole chunk at once: a few kilobytes of nested gzip
    would grow into gigabytes before any cap is checked. Redirects are not
    followed, whatever the client says: a credential goes only where the
    tool sent it. The whole exchange ends within the request's timeout.
    """
    request.headers["Accept-Encoding"] = ACCEPTED_ENCODINGS
    async with whole_exchange_within(time_limit_of(request), request):
        response = await http.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_stream_consumed:
                # An in-memory transport (httpx.MockTransport) hands over a
                # body it has read and decoded already.
                if len(response.content) > limit:
                    raise _too_large(request, limit)
                return response
            encodings = _content_codings(response)
            if not encodings and _declared_within(response, limit):
                # The usual answer: its length is declared, small, not
                # compressed, and HTTP framing stops the read at that length.
                await response.aread()
                return response
            raw = await _read_raw(response, limit)
        finally:
            await response.aclose()

    body = raw
    for coding in reversed(encodings):
        body = _decoded(body, coding, limit, request)

    # The body is decoded already: drop the headers that described it raw.
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=request
    )


def _too_large(request: httpx.Request, limit: int) -> ServiceError:
    return ServiceError(
        f"{request.method} {where(str(request.url))} answered with more than "
        f"{limit} bytes; refusing to read it"
    )


async def _read_raw(response: httpx.Response, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise _too_large(response.request, limit)
    return bytes(body)


def _content_codings(response: httpx.Response) -> list[str]:
    header = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in header.split(",")]
    return [c for c in codings if c and c != "identity"]


def _declared_within(response: httpx.Response, limit: int) -> bool:
    """True when the answer's declared length is its whole size and fits."""
    # With Transfer-Encoding the length header does not frame the body.
    if "transfer-encoding" in response.headers:
        return False
    declared = response.headers.get("content-length", "")
    return declared.isdigit() and int(declared) <= limit


def _decoded(data: bytes, coding: str, limit: int, request: httpx.Request) -> bytes:
    """``data`` with one content coding undone, never past ``limit`` bytes."""
    if coding in ("gzip", "x-gzip"):
        return _inflated(data, zlib.MAX_WBITS | 16, limit, request)
    if coding == "deflate":
        # RFC 9110 8.4.1.2 says zlib-wrapped; some servers send it raw.
        try:
            return _inflated(data, zlib.MAX_WBITS, limit, request)
        except ServiceError:
            return _inflated(data, -zlib.MAX_WBITS, limit, request)

    raise ServiceError(
        f"{request.method} {where(str(request.url))} answered with content "
        f"coding {coding[:40]!r}; this tool asks for and reads only "
        f"{ACCEPTED_ENCODINGS}"
    )


def _inflated(data: bytes, wbits: int, limit: int, request: httpx.Request) -> bytes:
    out = bytearray()
    try:
        # A gzip body may hold several members one after another.
        while data:
            inflater = zlib.decompressobj(wbits)
            # max_length is at least 1 here: 0 would mean "no limit".
            out += inflater.decompress(data, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise _too_large(request, limit)
            if not inflater.eof:
                raise zlib.error("the compressed body ends early")
            data = inflater.unused_data
    except zlib.error as error:
        raise ServiceError(
            f"{request.method} {where(str(request.url))} answered with a body "
            f"that does not decompress: {error}"
        ) from error

    return bytes(out)
