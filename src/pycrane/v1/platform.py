"""Platforms (``os/arch[/variant][:osversion]``) and how a wanted platform matches one offered."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrane.errors import InvalidPlatform, ManifestError

__all__ = ["Platform"]


@dataclass(frozen=True)
class Platform:
    """An operating system and CPU architecture, as in an index entry or a config."""

    os: str
    architecture: str
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = field(default=())
    features: tuple[str, ...] = field(default=())

    @classmethod
    def parse(cls, value: str) -> Platform:
        """Parse ``os/arch[/variant][:osversion]``, e.g. ``linux/arm64/v8``."""
        text = value.strip()
        os_version: str | None = None
        if ":" in text:
            text, _, os_version = text.partition(":")
            if not os_version:
                raise InvalidPlatform(f"platform {value!r}: empty os version after ':'")
        parts = text.split("/")
        if len(parts) < 2 or len(parts) > 3 or not all(parts):
            raise InvalidPlatform(
                f"platform {value!r}: expected os/arch[/variant][:osversion], e.g. linux/amd64"
            )
        return cls(
            os=parts[0],
            architecture=parts[1],
            variant=parts[2] if len(parts) == 3 else None,
            os_version=os_version,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "platform") -> Platform:
        """Build from the JSON object of a descriptor's ``platform`` field."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"{where}: expected an object")
        os_ = data.get("os")
        arch = data.get("architecture")
        if not isinstance(os_, str) or not isinstance(arch, str):
            raise ManifestError(f"{where}: 'os' and 'architecture' must be strings")
        variant = data.get("variant")
        os_version = data.get("os.version")
        if variant is not None and not isinstance(variant, str):
            raise ManifestError(f"{where}.variant: expected a string")
        if os_version is not None and not isinstance(os_version, str):
            raise ManifestError(f"{where}.os.version: expected a string")
        return cls(
            os=os_,
            architecture=arch,
            variant=variant or None,
            os_version=os_version or None,
            os_features=_str_tuple(data.get("os.features"), f"{where}.os.features"),
            features=_str_tuple(data.get("features"), f"{where}.features"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object for a descriptor's ``platform`` field."""
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        if self.features:
            out["features"] = list(self.features)
        return out

    def __str__(self) -> str:
        s = f"{self.os}/{self.architecture}"
        if self.variant:
            s += f"/{self.variant}"
        if self.os_version:
            s += f":{self.os_version}"
        return s

    def normalized(self) -> Platform:
        """The canonical spelling: ``aarch64`` is ``arm64``, ``arm64/v8`` is ``arm64``, ..."""
        arch, variant = _normalize_arch(self.architecture.lower(), (self.variant or "").lower())
        return Platform(
            os=self.os.lower(),
            architecture=arch,
            variant=variant or None,
            os_version=self.os_version,
            os_features=self.os_features,
            features=self.features,
        )

    def satisfied_by(self, offered: Platform) -> bool:
        """Whether ``offered`` (an index entry's platform) is acceptable for this wanted one.

        OS and architecture must match after normalisation; variant and OS version
        must match only when this platform sets them; features must be a subset.
        """
        want = self.normalized()
        have = offered.normalized()
        if want.os != have.os or want.architecture != have.architecture:
            return False
        if want.variant and want.variant != have.variant:
            return False
        if want.os_version and want.os_version != have.os_version:
            return False
        if not set(want.os_features) <= set(have.os_features):
            return False
        return set(want.features) <= set(have.features)


_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """Mirror containerd's platforms.Normalize for architectures and variants."""
    if arch == "armhf":
        return "arm", variant or "v7"
    if arch == "armel":
        return "arm", variant or "v6"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    elif arch == "amd64" and variant == "v1":
        variant = ""
    return arch, variant


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: expected a list of strings")
    return tuple(value)
