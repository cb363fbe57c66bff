"""Listing: tags, the catalog, and the one ``Link`` paginator that referrers share.

Registries page long lists with ``Link: <url>; rel="next"``. :class:`Paginator`
follows those links for every listing endpoint, with one set of guards: the next
page must be on the same scheme and host as the first (credentials never follow a
link elsewhere), a page is never fetched twice, and at most :data:`MAX_PAGES`
pages are read.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

from pycrane.errors import RegistryError
from pycrane.name import Registry, Repository
from pycrane.remote._api import RegistryAPI
from pycrane.remote._transport import Response

__all__ = ["MAX_PAGES", "Lister", "Paginator", "next_link"]

#: A listing longer than this many pages is cut off (a registry looping on its links).
MAX_PAGES = 1000


def next_link(values: list[str], current: str) -> str | None:
    """The ``rel="next"`` target of ``Link`` header values, resolved against ``current``."""
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if 'rel="next"' in part or "rel=next" in part:
                start, end = part.find("<"), part.find(">")
                if start != -1 and end > start:
                    return urllib.parse.urljoin(current, part[start + 1 : end])
    return None


class Paginator:
    """Follows ``Link`` pagination from a first response (thread-safe, stateless)."""

    def __init__(self, api: RegistryAPI) -> None:
        self.api = api

    def pages(
        self,
        registry: Registry,
        first: Response,
        *,
        scopes: list[str],
        what: str,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Iterator[Response]:
        """``first``, then every page its links lead to (same scheme and host only)."""
        origin = urllib.parse.urlsplit(first.url)
        seen = {first.url}
        page = first
        while True:
            yield page
            url = next_link(page.header_values("Link"), page.url)
            if not url or url in seen or len(seen) >= MAX_PAGES:
                return
            nxt = urllib.parse.urlsplit(url)
            if (nxt.scheme, nxt.netloc) != (origin.scheme, origin.netloc):
                raise RegistryError(f"{what}: pagination link to another host refused")
            seen.add(url)
            page = self.api.request(
                "GET", registry, url, scopes=scopes, what=what, headers=headers, stream=stream
            )


class Lister:
    """Tags of a repository and repositories of a registry."""

    def __init__(self, api: RegistryAPI, paginator: Paginator) -> None:
        self.api = api
        self.paginator = paginator

    def _items(
        self, registry: Registry, path: str, scopes: list[str], what: str, key: str
    ) -> Iterator[str]:
        first = self.api.request("GET", registry, path, scopes=scopes, what=what)
        for page in self.paginator.pages(registry, first, scopes=scopes, what=what):
            try:
                obj = json.loads(page.content() or b"{}")
            except ValueError:
                raise RegistryError(f"{what}: response is not JSON") from None
            items = obj.get(key) if isinstance(obj, dict) else None
            yield from (str(x) for x in items or [])

    def tags(self, repo: Repository, page_size: int | None = None) -> list[str]:
        """Every tag of a repository, following ``Link`` pagination."""
        path = f"/v2/{repo.path}/tags/list" + (f"?n={page_size}" if page_size else "")
        return list(
            self._items(repo.registry, path, [repo.scope("pull")], f"tags of {repo.name}", "tags")
        )

    def catalog(self, registry: Registry, page_size: int | None = None) -> list[str]:
        """Every repository of a registry (where the registry allows it)."""
        path = "/v2/_catalog" + (f"?n={page_size}" if page_size else "")
        what = f"catalog of {registry.name}"
        return list(self._items(registry, path, ["registry:catalog:*"], what, "repositories"))
