"""Platforms (``os/arch[/variant][:osversion]``) and how a wanted platform matches one offered.

Spellings are normalised as containerd's ``platforms.Normalize`` does (``x86_64`` is
``amd64``, ``aarch64`` is ``arm64``, ``arm64/v8`` is ``arm64``, ``arm`` is ``arm/v7``),
while matching follows go-containerregistry: a wanted platform without a variant
accepts every variant, and an index child without a platform counts as linux/amd64.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrane.errors import InvalidPlatform, ManifestError

__all__ = ["DEFAULT_PLATFORM", "WILDCARD", "Platform"]

_PART = re.compile(r"[A-Za-z0-9_.+-]+|\*")
#: In a wanted platform, ``*`` for the OS, architecture or variant accepts any value.
WILDCARD = "*"


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
    def parse(cls, value: str | Platform) -> Platform:
        """Parse ``os/arch[/variant][:osversion]``, e.g. ``linux/arm64/v8`` or ``linux/*``."""
        if isinstance(value, Platform):
            return value
        if not isinstance(value, str):
            raise InvalidPlatform(f"platform {value!r}: expected a string such as linux/amd64")
        text = value.strip()
        os_version: str | None = None
        if ":" in text:
            text, _, os_version = text.partition(":")
            if not os_version or not _PART.fullmatch(os_version):
                raise InvalidPlatform(
                    f"platform {value!r}: expected an os version such as 10.0.17763 after ':'"
                )
        parts = text.split("/")
        if len(parts) < 2 or len(parts) > 3 or not all(_PART.fullmatch(p) for p in parts):
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

    @classmethod
    def host(cls) -> Platform:
        """The platform of the running machine, normalised (no OS version, so it matches
        any Windows build; pass one explicitly when it matters)."""
        import platform as _platform  # asked rarely; the module costs ~1.5 ms to import

        os_name = _host_os(sys.platform, _platform.system())
        arch, variant = _host_arch(_platform.machine())
        return cls(os_name, arch, variant or None).normalized()

    def normalized(self) -> Platform:
        """The canonical spelling: ``aarch64`` is ``arm64``, ``arm64/v8`` is ``arm64``, ..."""
        arch, variant = _normalize_arch(self.architecture.lower(), (self.variant or "").lower())
        os_name = self.os.lower()
        return Platform(
            os=_OS_ALIASES.get(os_name, os_name),
            architecture=arch,
            variant=variant or None,
            os_version=self.os_version,
            os_features=self.os_features,
            features=self.features,
        )

    def satisfied_by(self, offered: Platform) -> bool:
        """Whether ``offered`` (an index entry's platform) is acceptable for this wanted one.

        OS and architecture must match after normalisation; the variant (normalised)
        and the OS version must match only when this platform sets them, so
        ``linux/arm`` accepts ``arm/v6`` but ``linux/arm/v7`` does not; ``*`` as OS,
        architecture or variant accepts anything; features must be a subset.
        """
        want = self.normalized()
        have = offered.normalized()
        if want.os not in (WILDCARD, have.os):
            return False
        if want.architecture not in (WILDCARD, have.architecture):
            return False
        if self.variant and want.variant not in (WILDCARD, have.variant):
            return False
        if want.os_version and want.os_version != have.os_version:
            return False
        if not set(want.os_features) <= set(have.os_features):
            return False
        return set(want.features) <= set(have.features)


#: What an index child without a ``platform`` is taken to be (as go-containerregistry does).
DEFAULT_PLATFORM = Platform("linux", "amd64")

_OS_ALIASES = {"macos": "darwin"}

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
}


def _normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    """Mirror containerd's ``normalizeArch`` (inputs already lowercased)."""
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "386":
        variant = ""
    elif arch == "amd64":
        if variant == "v1":
            variant = ""
    elif arch == "arm64":
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
    elif arch == "arm":
        if variant in ("", "7"):
            variant = "v7"
        elif variant in ("5", "6", "8"):
            variant = "v" + variant
    return arch, variant


def _host_os(sys_platform: str, system: str) -> str:
    if sys_platform.startswith("linux"):
        return "linux"
    if sys_platform == "win32" or sys_platform == "cygwin":
        return "windows"
    if sys_platform == "darwin":
        return "darwin"
    for prefix in ("freebsd", "openbsd", "netbsd", "aix", "sunos"):
        if sys_platform.startswith(prefix):
            return "solaris" if prefix == "sunos" else prefix
    return system.lower() or sys_platform


def _host_arch(machine: str) -> tuple[str, str]:
    """The GOARCH and variant of ``platform.machine()`` (``armv7l`` is ``arm/v7``)."""
    m = machine.lower()
    arm = re.fullmatch(r"armv(\d)[a-z]*", m)
    if arm:
        return "arm", "v" + arm.group(1)
    table = {"amd64": "amd64", "x86": "386", "arm64": "arm64", "loongarch64": "loong64"}
    return table.get(m, m), ""


def _str_tuple(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ManifestError(f"{where}: expected a list of strings")
    return tuple(value)
