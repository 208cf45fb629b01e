"""When a failed platform service call is tried again, and after how long.

A call is repeated only when repeating it cannot change what the platform
holds: GET, HEAD, PUT and DELETE by their HTTP semantics (RFC 9110 9.2.2),
and a score post, which AGS 2.0 makes idempotent (the platform keys a score
by user and timestamp, so a repeat replaces it). Creating a line item is a
POST that would make a second column, so it is never repeated.

Only failures that may pass on their own are retried: a 429, 502, 503 or 504
answer, a timeout, a dropped connection. The waits grow exponentially, with
jitter so that workers that failed together do not come back together, and a
``Retry-After`` is honoured. A :class:`RetryPolicy` bounds the whole: at most
``retries`` more tries, none starting after ``deadline`` seconds, and a
``Retry-After`` that reaches past the deadline ends the retries at once.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from .config import (
    DEFAULT_SERVICE_RETRIES,
    DEFAULT_SERVICE_RETRY_DEADLINE,
    ToolConfig,
    check_retries,
    check_retry_deadline,
)
from .exceptions import PlatformResponseError, ServiceError

__all__ = [
    "IDEMPOTENT_METHODS",
    "RETRY_STATUSES",
    "Retries",
    "RetryPolicy",
    "retry_after",
    "transient_failure",
]

#: Answers that say the failure is temporary. 429 asks the caller to slow
#: down; 502, 503 and 504 (RFC 9110 15.6.3 to 15.6.5) say an upstream failed
#: or the server is overloaded or down for a while. 500 is left out on
#: purpose: it says the platform failed at this very request, and on LMSs
#: that is most often caused by the request (a score for a user who is not
#: enrolled, a value its code does not expect), so it comes back the same.
#: Retrying it would make the caller wait out the backoff for that same
#: answer; it is raised at once, with the platform's body.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Methods whose repeat leaves the platform as one request would.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE"})
#: Nominal seconds before the first retry; each next one doubles.
FIRST_DELAY = 0.5
MAX_DELAY = 8.0
#: Up to this fraction of each nominal wait is taken off at random.
JITTER = 0.5

Sleep = Callable[[float], Awaitable[None]]

_DELTA_SECONDS = re.compile(r"[0-9]+", re.ASCII)
# Errors on our side of the connection: a repeat fails the same way.
_LOCAL_TRANSPORT_ERRORS = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often, and for how long, a call safe to repeat is tried again.

    ``retries`` counts the tries after the first (0 turns retrying off);
    ``deadline`` is the seconds from the first try after which no other
    starts; the last one started still runs under the HTTP timeout.
    ``sleep``, ``clock`` (monotonic seconds) and ``jitter`` (a fraction in
    [0, 1)) are there for tests. Raises ConfigurationError for a count or a
    deadline out of bounds.
    """

    retries: int = DEFAULT_SERVICE_RETRIES
    deadline: float = DEFAULT_SERVICE_RETRY_DEADLINE
    sleep: Sleep = asyncio.sleep
    clock: Callable[[], float] = time.monotonic
    jitter: Callable[[], float] = random.random

    def __post_init__(self) -> None:
        check_retries("retries", self.retries)
        deadline = check_retry_deadline("deadline", self.deadline)
        object.__setattr__(self, "deadline", deadline)

    @classmethod
    def from_config(cls, config: ToolConfig) -> RetryPolicy:
        """The policy set by ``service_retries`` and ``service_retry_deadline``."""
        return cls(
            retries=config.service_retries, deadline=config.service_retry_deadline
        )

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        nominal = min(MAX_DELAY, FIRST_DELAY * 2.0 ** (retry - 1))
        return nominal * (1 - JITTER * self.jitter())

    def start(self) -> Retries:
        """The retries of one call, its deadline counted from now."""
        return Retries(self)


class Retries:
    """The retries left to one call; made by :meth:`RetryPolicy.start`."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._ends = policy.clock() + policy.deadline
        self.used = 0
        #: Why :meth:`next_delay` last gave None, in words.
        self.stopped = ""

    def next_delay(self, asked: float | None) -> float | None:
        """Seconds to wait before the next try, or None if none is left.

        ``asked`` is the platform's ``Retry-After`` in seconds, if any: the
        wait is never shorter. None when every retry is used or the next try
        would start past the deadline; :attr:`stopped` then says which.
        """
        policy = self._policy
        if self.used >= policy.retries:
            self.stopped = (
                "retrying is off (service_retries is 0)"
                if policy.retries == 0
                else f"all {policy.retries} retries were used"
            )
            return None

        delay = policy.backoff(self.used + 1)
        if asked is not None:
            delay = max(delay, asked)
        if policy.clock() + delay > self._ends:
            self.stopped = (
                f"the platform asked to wait {asked:g} s (Retry-After), past"
                if asked is not None and asked >= delay
                else "the next try would start past"
            ) + f" the retry deadline of {policy.deadline:g} s"
            return None

        self.used += 1
        return delay


def transient_failure(error: ServiceError) -> str | None:
    """The failure behind ``error`` in words if it may pass, else None."""
    if isinstance(error, PlatformResponseError):
        if error.status in RETRY_STATUSES:
            return f"answered {error.status}"
        return None

    cause = error.__cause__
    if isinstance(cause, httpx.TimeoutException):
        return f"no answer in time ({type(cause).__name__})"
    if isinstance(cause, httpx.TransportError) and not isinstance(
        cause, _LOCAL_TRANSPORT_ERRORS
    ):
        return f"the connection failed ({type(cause).__name__})"

    return None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the answer's ``Retry-After`` asks to wait; None if absent or bad.

    RFC 9110 10.2.3: delay-seconds, or an HTTP-date. A date is read against
    the answer's own ``Date`` when it has one, so the two clocks need not
    agree; a date already past means no wait.
    """
    value = response.headers.get("retry-after", "").strip()
    if _DELTA_SECONDS.fullmatch(value):
        return float(value)

    when = _http_date(value)
    if when is None:
        return None
    sent = _http_date(response.headers.get("date", "").strip())
    now = sent if sent is not None else datetime.now(UTC)

    return max(0.0, (when - now).total_seconds())


def _http_date(value: str) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None

    # RFC 9110 5.6.7: an HTTP-date is in GMT even if it does not say so.
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
