"""Listing routes: the catalog, a repository's tags, and the referrers of a manifest.

``/v2/_catalog`` and ``/v2/<name>/tags/list`` page with ``n`` and ``last`` and
announce the next page in a ``Link`` header; ``/v2/<name>/referrers/<digest>``
answers an OCI index, filtered by ``artifactType`` when asked.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from pycrane.registry.apierrors import ApiError
from pycrane.registry.exchange import Exchange, parse_digest
from pycrane.v1 import mediatypes as mt

__all__ = ["catalog", "page", "referrers", "tags"]


def page(items: list[str], query: Mapping[str, list[str]]) -> tuple[list[str], bool, int | None]:
    """Apply ``n`` and ``last`` to a sorted list; return the page, whether more follow, n."""
    last = query.get("last", [None])[-1]
    if last is not None:
        items = [i for i in items if i > last]
    raw_n = query.get("n", [None])[-1]
    if raw_n is None or raw_n == "":
        return items, False, None
    try:
        n = int(raw_n)
    except ValueError:
        n = -1
    if n < 0:
        raise ApiError("PAGINATION_NUMBER_INVALID", f"n={raw_n!r}: expected a non-negative integer")
    return items[:n], n > 0 and len(items) > n, n


def catalog(ex: Exchange, query: Mapping[str, list[str]]) -> None:
    repos, more, n = page(ex.storage.repositories(), query)
    headers = {}
    if more and repos:
        last = urllib.parse.quote(repos[-1], safe="")
        headers["Link"] = f'</v2/_catalog?n={n}&last={last}>; rel="next"'
    ex.respond_json({"repositories": repos}, headers)


def tags(ex: Exchange, name: str, query: Mapping[str, list[str]]) -> None:
    all_tags = ex.storage.tags(name)
    if all_tags is None:
        raise ApiError("NAME_UNKNOWN", f"repository {name} unknown", detail={"name": name})
    found, more, n = page(all_tags, query)
    headers = {}
    if more and found:
        last = urllib.parse.quote(found[-1], safe="")
        headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={last}>; rel="next"'
    ex.respond_json({"name": name, "tags": found}, headers)


def referrers(ex: Exchange, name: str, raw_digest: str, query: Mapping[str, list[str]]) -> None:
    subject = parse_digest(raw_digest)
    entries = ex.storage.referrers(name, subject)
    headers = {}
    wanted = query.get("artifactType")
    if wanted:
        entries = [e for e in entries if e.get("artifactType") in wanted]
        headers["OCI-Filters-Applied"] = "artifactType"
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}
    ex.respond_json(doc, headers, mt.OCI_INDEX)
