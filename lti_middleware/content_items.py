"""Content items for Deep Linking 2.0 responses, checked when built.

One class per item type of Deep Linking 2.0, section 3: :class:`LTIResourceLink`
(``ltiResourceLink``), :class:`Link`, :class:`File`, :class:`HTML` and
:class:`Image`, with the parts they share (:class:`Icon`, :class:`Window`,
:class:`IFrame`, :class:`Embed`, :class:`TimeWindow`, :class:`LineItemSpec`).
A value the spec does not allow raises :class:`DeepLinkingError` at once, in
the handler that built it, rather than on the platform. ``to_json`` gives the
member names the spec spells (``lineItem``, ``scoreMaximum``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from .exceptions import LTIError

__all__ = [
    "HTML",
    "ContentItem",
    "DeepLinkingError",
    "Embed",
    "File",
    "Icon",
    "IFrame",
    "Image",
    "LTIResourceLink",
    "LineItemSpec",
    "Link",
    "TimeWindow",
    "Window",
    "check_url",
]

_TARGETS = ("iframe", "window", "embed")


class DeepLinkingError(LTIError, ValueError):
    """A content item or response failed local checks; nothing was signed."""


def check_url(name: str, value: object) -> str:
    """``value`` if it is an absolute http(s) URL; else DeepLinkingError."""
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise DeepLinkingError(f"{name} must be an absolute http(s) URL, got {value!r}")
    return str(value)


def _check_text(name: str, value: object) -> None:
    if value is not None and not isinstance(value, str):
        raise DeepLinkingError(f"{name} must be a string, got {value!r}")


def _check_size(name: str, value: object) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value <= 0
    ):
        raise DeepLinkingError(
            f"{name} must be a whole number of pixels > 0, got {value!r}"
        )


def _compact(members: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in members.items() if value is not None}


def _time(name: str, value: datetime | None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise DeepLinkingError(
            f"{name} must be a datetime with a time zone, got {value!r}"
        )
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Icon:
    """An image for an item's ``icon`` or ``thumbnail``; sizes in pixels."""

    url: str
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        check_url("icon url", self.url)
        _check_size("icon width", self.width)
        _check_size("icon height", self.height)

    def to_json(self) -> dict[str, Any]:
        return _compact({"url": self.url, "width": self.width, "height": self.height})


@dataclass(frozen=True, kw_only=True)
class Window:
    """Open the item in a new window (presentation target ``window``)."""

    target_name: str | None = None
    width: int | None = None
    height: int | None = None
    window_features: str | None = None

    def __post_init__(self) -> None:
        _check_text("window target_name", self.target_name)
        _check_text("window window_features", self.window_features)
        _check_size("window width", self.width)
        _check_size("window height", self.height)

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {
                "targetName": self.target_name,
                "width": self.width,
                "height": self.height,
                "windowFeatures": self.window_features,
            }
        )


@dataclass(frozen=True, kw_only=True)
class IFrame:
    """Show the item in an iframe (target ``iframe``); a Link needs ``src``."""

    src: str | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if self.src is not None:
            check_url("iframe src", self.src)
        _check_size("iframe width", self.width)
        _check_size("iframe height", self.height)

    def to_json(self) -> dict[str, Any]:
        return _compact({"src": self.src, "width": self.width, "height": self.height})


@dataclass(frozen=True)
class Embed:
    """HTML the platform embeds to show a Link (target ``embed``)."""

    html: str

    def __post_init__(self) -> None:
        if not isinstance(self.html, str) or not self.html:
            raise DeepLinkingError("embed html must be a non-empty string")

    def to_json(self) -> dict[str, Any]:
        return {"html": self.html}


@dataclass(frozen=True, kw_only=True)
class TimeWindow:
    """A start and end, each optional and with a time zone (sent in UTC)."""

    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        start, end = _time("start", self.start), _time("end", self.end)
        if self.start and self.end and self.end < self.start:
            raise DeepLinkingError(f"end {end} is before start {start}")

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {
                "startDateTime": _time("start", self.start),
                "endDateTime": _time("end", self.end),
            }
        )


@dataclass(frozen=True, kw_only=True)
class LineItemSpec:
    """The gradebook column an LTIResourceLink asks the platform to create.

    ``score_maximum`` must be a finite number > 0; ``label`` defaults, on
    the platform, to the item's title.
    """

    score_maximum: float
    label: str | None = None
    resource_id: str | None = None
    tag: str | None = None
    grades_released: bool | None = None

    def __post_init__(self) -> None:
        maximum = self.score_maximum
        if (
            isinstance(maximum, bool)
            or not isinstance(maximum, int | float)
            or not math.isfinite(maximum)
            or maximum <= 0
        ):
            raise DeepLinkingError(
                f"score_maximum must be a number > 0, got {maximum!r}"
            )
        if self.label is not None and (
            not isinstance(self.label, str) or not self.label.strip()
        ):
            raise DeepLinkingError("line item label must be a non-blank string")
        _check_text("line item resource_id", self.resource_id)
        _check_text("line item tag", self.tag)
        if self.grades_released is not None and not isinstance(
            self.grades_released, bool
        ):
            raise DeepLinkingError("grades_released must be a boolean")

    def to_json(self) -> dict[str, Any]:
        return _compact(
            {
                "scoreMaximum": self.score_maximum,
                "label": self.label,
                "resourceId": self.resource_id,
                "tag": self.tag,
                "gradesReleased": self.grades_released,
            }
        )


# -- Content items (Deep Linking 2.0, section 3) ------------------------------


def _check_extensions(extensions: Mapping[str, Any]) -> None:
    for key in extensions:
        if not isinstance(key, str) or not key.startswith(("http://", "https://")):
            raise DeepLinkingError(f"extension key {key!r} must be a full URL")


def _part(value: Any) -> Any:
    return None if value is None else value.to_json()


@dataclass(frozen=True, kw_only=True)
class _Item:
    """Members every content item has; subclasses add theirs."""

    type: ClassVar[str]

    title: str | None = None
    text: str | None = None
    extensions: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_text(f"{self.type} title", self.title)
        _check_text(f"{self.type} text", self.text)
        _check_extensions(self.extensions)

    def presentation_targets(self) -> tuple[str, ...]:
        """The presentation targets this item asks for."""
        return tuple(
            target for target in _TARGETS if getattr(self, target, None) is not None
        )

    def to_json(self) -> dict[str, Any]:
        """The item as the response's ``content_items`` member lists it."""
        members = {"type": self.type, "title": self.title, "text": self.text}
        document = _compact({**members, **self._members()})
        document.update(self.extensions)
        return document

    def _members(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, kw_only=True)
class LTIResourceLink(_Item):
    """A link the platform launches back into this tool (``ltiResourceLink``).

    Without ``url`` the platform launches the tool's registered target.
    ``custom`` values are strings, sent back in every launch of the link;
    ``line_item`` asks the platform for a gradebook column bound to the link.
    """

    type: ClassVar[str] = "ltiResourceLink"

    url: str | None = None
    icon: Icon | None = None
    thumbnail: Icon | None = None
    window: Window | None = None
    iframe: IFrame | None = None
    custom: Mapping[str, str] | None = None
    line_item: LineItemSpec | None = None
    available: TimeWindow | None = None
    submission: TimeWindow | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.url is not None:
            check_url("ltiResourceLink url", self.url)
        for name, value in (self.custom or {}).items():
            if not isinstance(name, str) or not isinstance(value, str):
                raise DeepLinkingError(
                    f"custom parameters must be strings; {name!r} is {value!r}"
                )

    def _members(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "icon": _part(self.icon),
            "thumbnail": _part(self.thumbnail),
            "window": _part(self.window),
            "iframe": _part(self.iframe),
            "custom": dict(self.custom) if self.custom is not None else None,
            "lineItem": _part(self.line_item),
            "available": _part(self.available),
            "submission": _part(self.submission),
        }


@dataclass(frozen=True, kw_only=True)
class Link(_Item):
    """A plain URL, hosted anywhere (``link``)."""

    type: ClassVar[str] = "link"

    url: str
    icon: Icon | None = None
    thumbnail: Icon | None = None
    embed: Embed | None = None
    window: Window | None = None
    iframe: IFrame | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url("link url", self.url)
        if self.iframe is not None and self.iframe.src is None:
            raise DeepLinkingError("a link's iframe needs src")

    def _members(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "icon": _part(self.icon),
            "thumbnail": _part(self.thumbnail),
            "embed": _part(self.embed),
            "window": _part(self.window),
            "iframe": _part(self.iframe),
        }


@dataclass(frozen=True, kw_only=True)
class File(_Item):
    """A file the platform downloads from ``url`` (``file``).

    ``media_type`` is checked against the platform's ``accept_media_types``;
    ``expires_at`` says until when ``url`` can be fetched.
    """

    type: ClassVar[str] = "file"

    url: str
    icon: Icon | None = None
    thumbnail: Icon | None = None
    media_type: str | None = None
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url("file url", self.url)
        _check_text("file media_type", self.media_type)
        _time("expires_at", self.expires_at)

    def _members(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "icon": _part(self.icon),
            "thumbnail": _part(self.thumbnail),
            "mediaType": self.media_type,
            "expiresAt": _time("expires_at", self.expires_at),
        }


@dataclass(frozen=True, kw_only=True)
class HTML(_Item):
    """An HTML fragment the platform embeds in its page (``html``)."""

    type: ClassVar[str] = "html"

    html: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.html, str) or not self.html:
            raise DeepLinkingError("html must be a non-empty string")

    def _members(self) -> dict[str, Any]:
        return {"html": self.html}


@dataclass(frozen=True, kw_only=True)
class Image(_Item):
    """An image the platform shows (``image``); sizes in pixels."""

    type: ClassVar[str] = "image"

    url: str
    icon: Icon | None = None
    thumbnail: Icon | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_url("image url", self.url)
        _check_size("image width", self.width)
        _check_size("image height", self.height)

    def _members(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "icon": _part(self.icon),
            "thumbnail": _part(self.thumbnail),
            "width": self.width,
            "height": self.height,
        }


ContentItem = LTIResourceLink | Link | File | HTML | Image
