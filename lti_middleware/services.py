"""Authenticated calls to a platform's services, shared by AGS and NRPS.

A :class:`ServiceSession` sends requests with access tokens from an
:class:`~lti_middleware.tokens.AccessTokenClient` (never the id_token), only
to the origins the launch named for the service, retries once on a 401 with a
fresh token, tries a call that is safe to repeat again after a transient
failure (see :mod:`lti_middleware.retries`), and follows paged containers
through their ``Link: rel="next"`` headers without ever returning a silently
partial list.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from json import dumps
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from .config import Registration, check_url, origin_of
from .exceptions import (
    ConfigurationError,
    PaginationError,
    PlatformResponseError,
    ServiceError,
    ServiceUnavailableError,
)
from .retries import (
    IDEMPOTENT_METHODS,
    Retries,
    RetryPolicy,
    retry_after,
    transient_failure,
)
from .tokens import AccessTokenClient
from .transport import platform_text, scrubbed_error, send_bounded, where

logger = logging.getLogger(__name__)

#: The platform's error body is kept up to this many characters.
MAX_BODY_CHARS = 4096
#: Pages followed at most in one listing.
MAX_PAGES = 100


#: Longest Link header read; longer ones are refused, not truncated.
MAX_LINK_HEADER = 32 * 1024
#: Largest service response body read, in bytes.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The quoted string opening at ``start`` and the index after it."""
    value: list[str] = []
    index = start + 1
    while index < len(text) and text[index] != '"':
        if text[index] == "\\" and index + 1 < len(text):
            index += 1
        value.append(text[index])
        index += 1
    return "".join(value), index + 1


def _link_params(text: str, index: int) -> tuple[dict[str, str], int]:
    """Parameters after a link's ``<target>``, up to the ``,`` that ends it."""
    params: dict[str, str] = {}
    while index < len(text) and text[index] != ",":
        if text[index] != ";":
            index += 1
            continue
        name_end = index + 1
        while name_end < len(text) and text[name_end] not in "=;,":
            name_end += 1
        name = text[index + 1 : name_end].strip().lower()
        index = name_end
        value = ""
        if index < len(text) and text[index] == "=":
            index += 1
            while index < len(text) and text[index] == " ":
                index += 1
            if index < len(text) and text[index] == '"':
                value, index = _quoted(text, index)
            else:
                value_end = index
                while value_end < len(text) and text[value_end] not in ";,":
                    value_end += 1
                value, index = text[index:value_end].strip(), value_end
        params.setdefault(name, value)
    return params, index + 1


def parse_links(headers: Iterable[str]) -> list[tuple[str, frozenset[str]]]:
    """(target, relation types) of each link in ``Link`` header values.

    RFC 8288: a header may hold several links, parameters may be quoted
    strings containing commas or "=", and ``rel`` is a space-separated list
    of relation types compared case-insensitively ("next last" is a next
    link). Targets are returned exactly as written. One pass over the text:
    a hostile header costs time in proportion to its length. Raises
    ValueError for a header longer than MAX_LINK_HEADER.
    """
    links = []
    for header in headers:
        if len(header) > MAX_LINK_HEADER:
            raise ValueError(f"Link header of {len(header)} characters")
        index = 0
        while True:
            start = header.find("<", index)
            end = header.find(">", start + 1) if start >= 0 else -1
            if end < 0:
                break
            params, index = _link_params(header, end + 1)
            relations = frozenset(params.get("rel", "").lower().split())
            links.append((header[start + 1 : end], relations))

    return links


def unexpected(url: str, response: httpx.Response, what: str) -> PlatformResponseError:
    """The error for a 2xx answer whose body is not what the spec promises."""
    return PlatformResponseError(
        method=response.request.method,
        url=url,
        status=response.status_code,
        body=platform_text(response, MAX_BODY_CHARS),
        what=what,
    )


@dataclass
class _Call:
    """One service call and what its tries learnt so far."""

    method: str
    url: str
    scopes: tuple[str, ...]
    what: str
    content: bytes | None
    content_type: str | None
    accept: str | None
    #: The method and URL the last try was sending to (the service or the
    #: token endpoint), for logs and errors.
    at: tuple[str, str] = ("", "")
    #: True once a 401 has cost the call its token: that happens only once.
    refreshed: bool = False


class ServiceSession:
    """Requests to one launch's service endpoints, with access tokens.

    ``origins`` are the only origins an access token is sent to: those of the
    service URLs in the launch's claim. ``service`` names the service in
    errors ("grade service", "roster service"). ``retry`` says how calls that
    are safe to repeat are tried again; the defaults of
    :class:`~lti_middleware.retries.RetryPolicy` when not given.
    """

    def __init__(
        self,
        *,
        registration: Registration,
        tokens: AccessTokenClient,
        http: httpx.AsyncClient,
        origins: Iterable[str],
        service: str,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._registration = registration
        self._tokens = tokens
        self._http = http
        self._origins = frozenset(origins)
        self._service = service
        self._retry = retry if retry is not None else RetryPolicy()

    async def request(
        self,
        method: str,
        url: str,
        *,
        scopes: Iterable[str],
        what: str,
        content_type: str | None = None,
        json: Any = None,
        accept: str | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one authenticated request and return its 2xx response.

        The access token is for exactly ``scopes``. A 401 drops the token and
        the request is tried once more with a new one. A call that is
        ``idempotent`` (by default: GET, HEAD, PUT, DELETE) is tried again
        after a 429, 502, 503 or 504, a timeout or a failed connection, of
        the service or of the token endpoint, as the retry policy allows; any
        call, idempotent or not, is tried again after a transient failure of
        its token request, which sent nothing to the service.
        Raises ServiceUnavailableError when those tries run out, ServiceError
        when the URL is not allowed or the request cannot be sent, and
        PlatformResponseError on any other non-2xx answer.
        """
        self._check_destination(url, what)
        content = None if json is None else dumps(json, allow_nan=False).encode()
        call = _Call(method, url, tuple(scopes), what, content, content_type, accept)
        repeatable = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        retries = self._retry.start()

        while True:
            try:
                return await self._authorized(call)
            except ServiceError as error:
                # A failed token request sent nothing to the service: even a
                # call that is not safe to repeat may try again.
                at_token_endpoint = call.at[1] == self._registration.token_url
                may_repeat = repeatable or at_token_endpoint
                failure = transient_failure(error) if may_repeat else None
                if failure is None:
                    raise
                delay = self._next_delay(call, retries, error, failure)

            await self._retry.sleep(delay)

    def _next_delay(
        self, call: _Call, retries: Retries, error: ServiceError, failure: str
    ) -> float:
        """Seconds before the next try; raises ServiceUnavailableError if none."""
        method, url = call.at
        attempt = retries.used + 1
        answer = error if isinstance(error, PlatformResponseError) else None
        # The service's or the token endpoint's Retry-After, whichever failed.
        wait = answer.retry_after if answer else None
        delay = retries.next_delay(wait)
        if delay is None:
            raise ServiceUnavailableError(
                what=call.what,
                method=method,
                endpoint=where(url),
                issuer=self._registration.issuer,
                attempts=attempt,
                status=answer.status if answer else None,
                body=answer.body if answer else "",
                failure=failure,
                stopped=retries.stopped,
                retry_after=wait,
            ) from error

        logger.warning(
            "%s for %s: %s %s, attempt %d of %d, %s; trying again in %.2f s",
            call.what,
            self._registration.issuer,
            method,
            where(url),
            attempt,
            self._retry.retries + 1,
            failure,
            delay,
        )
        return delay

    async def _authorized(self, call: _Call) -> httpx.Response:
        """One try of ``call``: its 2xx answer, or the error it met."""
        token, response = await self._send_with_token(call)
        if response.status_code == 401 and not call.refreshed:
            # The platform may have revoked the token early; fetch another.
            logger.info(
                "%s %s answered 401; retrying with a new token",
                call.method,
                where(call.url),
            )
            call.refreshed = True
            await self._tokens.invalidate(self._registration, call.scopes, token)
            token, response = await self._send_with_token(call)

        if not response.is_success:
            raise PlatformResponseError(
                method=call.method,
                url=call.url,
                status=response.status_code,
                body=platform_text(response, MAX_BODY_CHARS),
                what=call.what,
                retry_after=retry_after(response),
            )
        return response

    async def _send_with_token(self, call: _Call) -> tuple[str, httpx.Response]:
        call.at = ("POST", self._registration.token_url)
        token = await self._tokens.get_token(self._registration, call.scopes)

        call.at = (call.method, call.url)
        response = await self._send(
            call.method, call.url, token, call.content, call.content_type, call.accept
        )
        return token, response

    async def pages(
        self, url: str, *, scopes: Iterable[str], accept: str, what: str
    ) -> AsyncIterator[httpx.Response]:
        """Every page of a paged container, first to last.

        Follows ``Link: <url>; rel="next"`` exactly as given. A next link
        already visited, or more than MAX_PAGES pages, raises PaginationError:
        a partial listing would be taken for the whole.
        """
        visited: set[str] = set()
        next_url: str | None = url
        while next_url is not None:
            if next_url in visited or len(visited) >= MAX_PAGES:
                looped = next_url in visited
                raise PaginationError(
                    f"{what} stopped at {next_url!r} after {len(visited)} pages "
                    f"({'a next link loops' if looped else f'page cap {MAX_PAGES}'}); "
                    "the result would be incomplete"
                )
            visited.add(next_url)

            response = await self.request(
                "GET", next_url, scopes=scopes, accept=accept, what=what
            )
            yield response
            next_url = self.link(response, "next", next_url)

    def link(self, response: httpx.Response, rel: str, base: str) -> str | None:
        """The ``rel`` link of ``response`` as an absolute URL, or None."""
        try:
            links = parse_links(response.headers.get_list("link"))
        except ValueError as error:
            # Reading on without the next link would return a partial list.
            raise PaginationError(
                f"unreadable Link header at {base!r}: {error}"
            ) from None
        for target, relations in links:
            if rel in relations:
                try:
                    return urljoin(base, target)
                except ValueError as error:
                    raise PaginationError(
                        f"the {rel} link at {base!r} is not a URL: {target[:200]!r}"
                    ) from error

        return None

    def read_json(self, url: str, response: httpx.Response, what: str) -> Any:
        """The response's JSON body; PlatformResponseError when it is not JSON."""
        try:
            return response.json()
        except (ValueError, RecursionError):
            raise unexpected(url, response, what) from None

    def _check_destination(self, url: str, what: str) -> None:
        try:
            check_url(what, url)
        except ConfigurationError as error:
            raise ServiceError(f"refusing to send an access token: {error}") from error

        # The access token acts for the whole client: send it only to the
        # origins the platform itself named for this launch's service.
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise ServiceError(
                f"refusing to send an access token for {what}: "
                "the URL carries credentials"
            )
        if origin_of(url) not in self._origins:
            raise ServiceError(
                f"refusing to send an access token for {what} to {origin_of(url)}: "
                f"the launch's {self._service} is at {sorted(self._origins) or 'no URL'}"
            )

    async def _send(
        self,
        method: str,
        url: str,
        token: str,
        content: bytes | None,
        content_type: str | None,
        accept: str | None,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": self._tokens.user_agent,
        }
        if content_type is not None:
            headers["Content-Type"] = content_type
        if accept is not None:
            headers["Accept"] = accept

        logger.info("%s %s", method, where(url))
        try:
            request = self._http.build_request(
                method, url, content=content, headers=headers
            )
            return await send_bounded(self._http, request, MAX_RESPONSE_BYTES)
        except httpx.TimeoutException as error:
            if isinstance(error, httpx.ConnectTimeout | httpx.PoolTimeout):
                raise ServiceError(
                    f"{method} {url} could not be sent: {type(error).__name__}"
                ) from error
            # The request may have reached the platform and taken effect.
            raise ServiceError(
                f"{method} {url} got no answer in time ({error}); the platform may "
                "have acted on it, so check before sending anything that is not "
                "safe to repeat again (for a new line item: list the line items)"
            ) from error
        except httpx.HTTPError as error:
            cause = scrubbed_error(error)
            raise ServiceError(
                f"{method} {url} could not be sent: {type(error).__name__}: {cause}"
            ) from cause
        except UnicodeError as error:
            raise ServiceError(
                f"{method} {url} could not be sent: {type(error).__name__}: {error}"
            ) from error
