"""What the development platform remembers, in memory.

Issued login hints, access tokens, seen assertion ids, received scores,
what tools placed by deep linking, and the counters behind ``/stats``. One
event loop drives the app, so plain dicts suffice; entries past their
lifetime are pruned as new ones are written.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .settings import DevResourceLink


def fingerprint(token: str) -> str:
    """A SHA-256 digest, so raw tokens need not be kept."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class LaunchIntent:
    """A login the platform started: which user, which resource link."""

    login_hint: str
    message_hint: str
    user_id: str
    resource_link_id: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class AccessToken:
    """An access token the token endpoint issued."""

    scopes: frozenset[str]
    expires_at: float


@dataclass(frozen=True)
class ScoreRecord:
    """One accepted score, as the tool sent it."""

    user_id: str
    score_given: float | None
    score_maximum: float | None
    comment: str | None
    activity_progress: str
    grading_progress: str
    timestamp: str
    moment: datetime
    document: dict[str, Any]


@dataclass(frozen=True)
class PlacedContent:
    """A link or HTML fragment a tool placed in the course by deep linking."""

    type: str
    title: str
    url: str | None = None
    html: str | None = None


@dataclass
class LineItemRecord:
    """A line item of the course: a resource link's own, or one a tool made.

    ``id`` is the line item's path segment; dates are kept as the tool sent
    them; ``extensions`` are members named by full URLs.
    """

    id: str
    label: str
    score_maximum: float
    resource_link_id: str | None = None
    resource_id: str | None = None
    tag: str | None = None
    start_date_time: str | None = None
    end_date_time: str | None = None
    grades_released: bool | None = None
    extensions: dict[str, Any] = field(default_factory=dict)
    created_by_tool: bool = False


@dataclass(frozen=True)
class TokenRequestRecord:
    """One call to the token endpoint and how it ended."""

    scopes: tuple[str, ...]
    success: bool
    error: str | None = None


@dataclass
class PlatformState:
    """All mutable state of one platform app."""

    intents: dict[str, LaunchIntent] = field(default_factory=dict)
    id_tokens: set[str] = field(default_factory=set)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    seen_jtis: dict[str, float] = field(default_factory=dict)
    scores: dict[tuple[str, str], ScoreRecord] = field(default_factory=dict)
    token_requests: list[TokenRequestRecord] = field(default_factory=list)
    tool_jwks_fetches: int = 0
    auth_requests: int = 0
    id_tokens_issued: int = 0
    scores_received: int = 0
    scores_ignored: int = 0
    scores_refused: int = 0
    scores_by_user: dict[str, int] = field(default_factory=dict)
    line_items: dict[str, LineItemRecord] = field(default_factory=dict)
    next_line_item: int = 1
    placed_links: list[DevResourceLink] = field(default_factory=list)
    placed_content: list[PlacedContent] = field(default_factory=list)
    deep_linking_nonces: dict[str, float] = field(default_factory=dict)
    deep_linking_data: dict[str, float] = field(default_factory=dict)
    deep_linking_responses: int = 0
    deep_linking_refused: int = 0

    def issue_intent(
        self, user_id: str, resource_link_id: str, *, expires_at: float, now: float
    ) -> LaunchIntent:
        """Create and remember the hints for a new login."""
        self.intents = {k: v for k, v in self.intents.items() if v.expires_at > now}
        intent = LaunchIntent(
            login_hint=secrets.token_urlsafe(16),
            message_hint=secrets.token_urlsafe(16),
            user_id=user_id,
            resource_link_id=resource_link_id,
            expires_at=expires_at,
        )
        self.intents[intent.login_hint] = intent

        return intent

    def issue_access_token(self, scopes: frozenset[str], *, expires_at: float) -> str:
        """Create and remember a random access token."""
        token = secrets.token_urlsafe(32)
        self.access_tokens[fingerprint(token)] = AccessToken(scopes, expires_at)

        return token

    def remember_jti(self, jti: str, *, until: float, now: float) -> bool:
        """Record an assertion's ``jti``; False when it was seen before."""
        self.seen_jtis = {k: v for k, v in self.seen_jtis.items() if v > now}
        if jti in self.seen_jtis:
            return False
        self.seen_jtis[jti] = until

        return True

    def remember_once(
        self, seen: dict[str, float], key: str, *, until: float, now: float
    ) -> bool:
        """Record ``key`` in ``seen`` until ``until``; False when already there."""
        for old in [k for k, expiry in seen.items() if expiry <= now]:
            del seen[old]
        if key in seen:
            return False
        seen[key] = until

        return True

    def record_score(self, line_item_id: str, score: ScoreRecord) -> bool:
        """Keep ``score`` unless an equal or newer one is stored; True if kept.

        Platforms ignore a score whose timestamp is not after the last one
        for the same user and line item (AGS 2.0, Score service).
        """
        self.scores_received += 1
        self.scores_by_user[score.user_id] = (
            self.scores_by_user.get(score.user_id, 0) + 1
        )
        key = (line_item_id, score.user_id)
        previous = self.scores.get(key)
        if previous is not None and score.moment <= previous.moment:
            self.scores_ignored += 1
            return False
        self.scores[key] = score

        return True

    def add_line_item(self, **fields: Any) -> LineItemRecord:
        """Create a line item under a new id, never one used before.

        ``fields`` are those of :class:`LineItemRecord` but ``id``.
        """
        while str(self.next_line_item) in self.line_items:
            self.next_line_item += 1
        record = LineItemRecord(id=str(self.next_line_item), **fields)
        self.next_line_item += 1
        self.line_items[record.id] = record

        return record

    def remove_line_item(self, line_item_id: str) -> None:
        """Forget a line item and every score recorded for it."""
        self.line_items.pop(line_item_id, None)
        self.scores = {k: v for k, v in self.scores.items() if k[0] != line_item_id}

    def stats(self) -> dict[str, Any]:
        """Counters for ``/stats``; no tokens and no personal data."""
        return {
            "auth_requests": self.auth_requests,
            "id_tokens_issued": self.id_tokens_issued,
            "token_requests": len(self.token_requests),
            "tokens_issued": sum(1 for r in self.token_requests if r.success),
            "token_request_log": [
                {"scopes": list(r.scopes), "success": r.success, "error": r.error}
                for r in self.token_requests
            ],
            "tool_jwks_fetches": self.tool_jwks_fetches,
            "scores_received": self.scores_received,
            "scores_ignored": self.scores_ignored,
            "scores_refused": self.scores_refused,
            "scores_by_user": dict(self.scores_by_user),
            "deep_linking_responses": self.deep_linking_responses,
            "deep_linking_refused": self.deep_linking_refused,
            "placed_links": len(self.placed_links),
        }
