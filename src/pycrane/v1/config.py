"""Image configuration (the ``application/vnd.oci.image.config.v1+json`` blob).

:class:`ConfigFile` keeps the raw bytes and the whole parsed object, so fields pycrane
does not model survive a mutation untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pycrane.errors import ManifestError
from pycrane.v1.digest import Digest
from pycrane.v1.manifest import _load, canonical_json
from pycrane.v1.platform import Platform

__all__ = ["ConfigFile", "History"]


@dataclass(frozen=True)
class History:
    """One entry of the config's ``history``: how a layer (or an empty step) was made."""

    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.author:
            out["author"] = self.author
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True, eq=False)
class ConfigFile:
    """A parsed image config with its raw bytes."""

    raw: bytes
    data: Mapping[str, Any]

    @classmethod
    def parse(cls, raw: bytes) -> ConfigFile:
        obj = _load(raw, "config")
        for key in ("architecture", "os", "variant", "os.version", "created", "author"):
            if key in obj and obj[key] is not None and not isinstance(obj[key], str):
                raise ManifestError(f"config.{key}: expected a string")
        rootfs = obj.get("rootfs")
        if rootfs is not None:
            if not isinstance(rootfs, dict):
                raise ManifestError("config.rootfs: expected an object")
            ids = rootfs.get("diff_ids", [])
            if not isinstance(ids, list):
                raise ManifestError("config.rootfs.diff_ids: expected a list")
            for i, d in enumerate(ids):
                try:
                    Digest.parse(d)
                except ValueError as e:
                    raise ManifestError(f"config.rootfs.diff_ids[{i}]: {e}") from None
        hist = obj.get("history")
        if hist is not None and (
            not isinstance(hist, list) or not all(isinstance(h, dict) for h in hist)
        ):
            raise ManifestError("config.history: expected a list of objects")
        for i, h in enumerate(hist or ()):
            for key in ("created", "created_by", "author", "comment"):
                if h.get(key) is not None and not isinstance(h[key], str):
                    raise ManifestError(f"config.history[{i}].{key}: expected a string")
            if h.get("empty_layer") is not None and not isinstance(h["empty_layer"], bool):
                raise ManifestError(f"config.history[{i}].empty_layer: expected true or false")
        feats = obj.get("os.features")
        if feats is not None and (
            not isinstance(feats, list) or not all(isinstance(f, str) for f in feats)
        ):
            raise ManifestError("config.os.features: expected a list of strings")
        cfg = obj.get("config")
        if cfg is not None and not isinstance(cfg, dict):
            raise ManifestError("config.config: expected an object")
        return cls(raw=bytes(raw), data=obj)

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> ConfigFile:
        """Serialise ``obj`` once; the result is what gets stored and hashed."""
        return cls.parse(canonical_json(obj))

    @classmethod
    def new(cls, platform: Platform | None = None) -> ConfigFile:
        """An empty config, as for an image built FROM scratch."""
        p = platform or Platform("linux", "amd64")
        obj: dict[str, Any] = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            obj["variant"] = p.variant
        if p.os_version:
            obj["os.version"] = p.os_version
        obj["config"] = {}
        obj["rootfs"] = {"type": "layers", "diff_ids": []}
        return cls.from_dict(obj)

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the parsed object, safe to change and pass to :meth:`from_dict`."""
        return copy.deepcopy(dict(self.data))

    @cached_property
    def digest(self) -> Digest:
        return Digest.from_bytes(self.raw)

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def architecture(self) -> str:
        return str(self.data.get("architecture") or "")

    @property
    def os(self) -> str:
        return str(self.data.get("os") or "")

    @property
    def variant(self) -> str | None:
        v = self.data.get("variant")
        return str(v) if v else None

    @property
    def created(self) -> str | None:
        v = self.data.get("created")
        return str(v) if v else None

    @property
    def platform(self) -> Platform | None:
        if not self.os or not self.architecture:
            return None
        ov = self.data.get("os.version")
        feats = self.data.get("os.features") or ()
        return Platform(
            os=self.os,
            architecture=self.architecture,
            variant=self.variant,
            os_version=str(ov) if ov else None,
            os_features=tuple(str(f) for f in feats),
        )

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        rootfs = self.data.get("rootfs") or {}
        return tuple(Digest.parse(d) for d in rootfs.get("diff_ids", []))

    @property
    def history(self) -> tuple[History, ...]:
        out = []
        for h in self.data.get("history") or ():
            out.append(
                History(
                    created=h.get("created"),
                    created_by=h.get("created_by"),
                    author=h.get("author"),
                    comment=h.get("comment"),
                    empty_layer=bool(h.get("empty_layer", False)),
                )
            )
        return tuple(out)

    @property
    def config(self) -> Mapping[str, Any]:
        """The container run config (Env, Cmd, Entrypoint, Labels, ...)."""
        return self.data.get("config") or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigFile) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)
