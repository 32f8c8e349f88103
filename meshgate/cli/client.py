"""A small synchronous client of the meshgate (Kuma) resource API, for meshgatectl.

Error tree::

    ApiClientError          the request did not succeed
    ├── ConnectionFailed    nothing answered at the API URL (refused, unresolvable, timed out)
    └── ApiResponseError    the server answered 4xx/5xx; carries Kuma's error body (title, detail, fields)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from meshgate.apply_batch import APPLY_PATH
from meshgate.resources.descriptor import KindDescriptor

__all__ = ["ApiClient", "ApiClientError", "ApiResponseError", "ConnectionFailed", "FieldError", "ItemError"]

# Pages as large as the server allows: fewer round trips when listing everything.
LIST_PAGE_SIZE = 1000
# How long a bulk apply may take to answer: validating a full request (25k routes) is seconds of CPU on the
# server, more on a busy one.
_APPLY_READ_TIMEOUT = 300.0


class ApiClientError(Exception):
    pass


class ConnectionFailed(ApiClientError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"could not connect to the meshgate API at {url}: {reason}")


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ItemError:
    """One failing resource of a bulk apply (`resources` in the error body): its index in the request."""

    index: int
    fields: list[FieldError]


def _fields(params: object) -> list[FieldError]:
    items = params if isinstance(params, list) else []
    return [FieldError(str(p.get("field", "")), str(p.get("reason", ""))) for p in items if isinstance(p, dict)]


class ApiResponseError(ApiClientError):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        fields: list[FieldError] | None = None,
        items: list[ItemError] | None = None,
    ) -> None:
        self.status = status
        self.title = title
        self.detail = detail
        self.fields = list(fields or [])
        self.items = list(items or [])
        super().__init__(status, title, detail)

    def __str__(self) -> str:
        return f"{self.title} ({self.detail})" if self.detail and self.detail != self.title else self.title

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiResponseError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip() or response.reason_phrase
            return cls(response.status_code, f"HTTP {response.status_code}", text)
        resources = body.get("resources")
        items = [
            ItemError(r["index"], _fields(r.get("invalid_parameters")))
            for r in (resources if isinstance(resources, list) else [])
            if isinstance(r, dict) and isinstance(r.get("index"), int)
        ]
        return cls(
            response.status_code,
            str(body.get("title") or f"HTTP {response.status_code}"),
            str(body.get("detail") or ""),
            _fields(body.get("invalid_parameters")),
            items,
        )


def resource_path(kind: KindDescriptor, mesh: str, name: str | None = None) -> str:
    base = f"/meshes/{mesh}/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}"
    return base if name is None else f"{base}/{name}"


class ApiClient:
    def __init__(
        self, base_url: str, *, timeout: float = 30.0, page_size: int = LIST_PAGE_SIZE, token: str = ""
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        # Kuma's user token authentication: every request carries the token, if there is one.
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ConnectionFailed(self.base_url, str(exc) or "connection failed") from None
        except httpx.TimeoutException:
            raise ConnectionFailed(self.base_url, "timed out") from None
        except httpx.TransportError as exc:
            raise ConnectionFailed(self.base_url, str(exc) or type(exc).__name__) from None
        if response.status_code >= 400:
            raise ApiResponseError.from_response(response)
        return response

    def put(self, kind: KindDescriptor, mesh: str, name: str, doc: dict[str, Any]) -> bool:
        """Creates or updates; returns True when the resource was created."""
        response = self._request("PUT", resource_path(kind, mesh, name), json=doc)
        return response.status_code == 201

    def apply(self, docs: list[dict[str, Any]]) -> list[str]:
        """Creates or updates every resource in one request, all or nothing (`POST /_apply`); returns each
        item's "created" or "updated", in order."""
        # Checking 25k resources takes the server seconds; the connect timeout stays the client's.
        timeout = httpx.Timeout(self._http.timeout.connect, read=_APPLY_READ_TIMEOUT)
        response = self._request("POST", APPLY_PATH, json={"items": docs}, timeout=timeout)
        return [str(item.get("status", "")) for item in response.json().get("items") or []]

    def get(self, kind: KindDescriptor, mesh: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self._request("GET", resource_path(kind, mesh, name)).json()
        return body

    def list(self, kind: KindDescriptor, mesh: str) -> list[dict[str, Any]]:
        """Every resource of `kind` in `mesh`, following `next` links until the last page."""
        return list(self._iter(kind, mesh))

    def _iter(self, kind: KindDescriptor, mesh: str) -> Iterator[dict[str, Any]]:
        params: dict[str, str] = {"size": str(self.page_size)}
        seen_offsets: set[str] = set()
        while True:
            page: dict[str, Any] = self._request("GET", resource_path(kind, mesh), params=params).json()
            yield from page.get("items") or []
            next_url = page.get("next")
            if not next_url:
                return
            # Follow the server's link by its query only: the host in it is whatever Host header we sent,
            # which behind a proxy may not be reachable from here.
            query = {k: v[-1] for k, v in parse_qs(urlsplit(str(next_url)).query).items()}
            offset = query.get("offset", "")
            if offset in seen_offsets:
                raise ApiClientError(f"the server's next link repeats offset {offset!r}: {next_url}")
            seen_offsets.add(offset)
            params = query

    def delete(self, kind: KindDescriptor, mesh: str, name: str) -> None:
        self._request("DELETE", resource_path(kind, mesh, name))

    def post_text(self, path: str, doc: Mapping[str, Any]) -> str:
        """POSTs `doc` as JSON and returns the plain-text answer (Kuma's token endpoints answer the raw token)."""
        return self._request("POST", path, json=dict(doc)).text

    def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET any JSON endpoint (insights, traces)."""
        return self._request("GET", path, params=dict(params or {})).json()

    @contextmanager
    def stream_lines(
        self, path: str, params: Mapping[str, str] | None = None, *, idle_timeout: float = 45.0
    ) -> Iterator[Iterator[str]]:
        """The lines of a long-lived response (`kds watch`), as they arrive.

        `idle_timeout` bounds the silence between two lines: the server sends a heartbeat every 15 s, so
        three missed ones mean the server or the path to it is gone, reported as ConnectionFailed.
        """
        timeout = httpx.Timeout(self._http.timeout.connect, read=idle_timeout)
        try:
            with self._http.stream("GET", path, params=dict(params or {}), timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiResponseError.from_response(response)
                yield self._lines(response)
        except httpx.ConnectError as exc:
            raise ConnectionFailed(self.base_url, str(exc) or "connection failed") from None

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        try:
            yield from response.iter_lines()
        except httpx.TimeoutException:
            raise ConnectionFailed(self.base_url, "no data (not even a heartbeat) for too long") from None
        except httpx.TransportError as exc:
            raise ConnectionFailed(self.base_url, str(exc) or type(exc).__name__) from None
