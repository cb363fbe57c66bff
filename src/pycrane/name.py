"""Image references (``[registry/]path[:tag][@digest]``) parsed by distribution's grammar.

The grammar is the one of github.com/distribution/reference (``regexp.go``): a
registry is a hostname, IPv4 address or bracketed IPv6 address with an optional
port; a repository path is ``/``-separated lowercase components; a tag is
``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``; a digest is a :class:`~pycrane.v1.Digest`.
Docker Hub names are normalised as docker does (``ubuntu`` is
``index.docker.io/library/ubuntu:latest``), with one deliberate difference from
``normalize.go``: like go-containerregistry, a first component is a registry only
when it contains ``.`` or ``:`` or is ``localhost``, so ``Foo/bar`` is a
repository with an uppercase letter (an error), never a registry called ``Foo``.

Every class is a frozen, hashable dataclass whose ``str()`` is the canonical full
name, and ``parse(str(ref)) == ref`` always holds.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import TypeAlias

from pycrane.errors import InvalidDigest, InvalidReference
from pycrane.v1.digest import Digest

__all__ = [
    "DEFAULT_REGISTRY",
    "DEFAULT_TAG",
    "DOCKER_HUB_API_HOST",
    "NAME_TOTAL_LENGTH_MAX",
    "DigestRef",
    "Reference",
    "Registry",
    "Repository",
    "Tag",
    "familiar",
    "parse_reference",
]

DEFAULT_REGISTRY = "index.docker.io"
DEFAULT_TAG = "latest"
#: The host Docker Hub's registry API answers on; ``index.docker.io`` stays the name.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
#: distribution's NameTotalLengthMax, counted on ``docker.io/<path>`` for Docker Hub.
NAME_TOTAL_LENGTH_MAX = 255

_DOCKER_HUB_ALIASES = frozenset({"index.docker.io", "docker.io", "registry-1.docker.io"})
_LEGACY_HUB_DOMAIN = "docker.io"  # what distribution counts in the length limit

# Go's RE2 classes are ASCII-only; Python's \w and \d are not, so spell them out.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT_PAT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = r"(?:" + _DOMAIN_NAME + r"|" + _IPV6 + r")"
_DOMAIN_AND_PORT = _HOST + r"(?::[0-9]+)?"
_TAG_PAT = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"

_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT_PAT)
_DOMAIN_RE = re.compile(_DOMAIN_AND_PORT)
_TAG_RE = re.compile(_TAG_PAT)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}")


def _q(value: str) -> str:
    """Quote user input Go-style (``"..."``): printable text as is, everything else
    escaped, so the message stays one readable line."""
    quoted = json.dumps(value, ensure_ascii=False)
    if quoted.isprintable():
        return quoted
    return "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in quoted)


def _bad(value: str, why: str) -> InvalidReference:
    return InvalidReference(f"invalid reference {_q(value)}: {why}")


def _check_type(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidReference(f"invalid {what} {value!r}: expected a string")
    return value


def _normalize_registry(name: str, original: str) -> str:
    if not name:
        raise _bad(original, "registry is empty, expected host[:port]")
    if not _DOMAIN_RE.fullmatch(name):
        raise _bad(
            original,
            f"registry {_q(name)} must be a hostname, IPv4 or [IPv6] address with an optional "
            ":port",
        )
    name = name.lower()
    return DEFAULT_REGISTRY if name in _DOCKER_HUB_ALIASES else name


def _check_path(path: str, original: str) -> None:
    if not path:
        raise _bad(original, "repository path is empty")
    for component in path.split("/"):
        if not component:
            raise _bad(original, f"repository {_q(path)} has an empty path component")
        if _PATH_COMPONENT_RE.fullmatch(component):
            continue
        if component.isascii() and _PATH_COMPONENT_RE.fullmatch(component.lower()):
            raise _bad(original, "repository must be lowercase")
        raise _bad(
            original,
            f"repository component {_q(component)} must match {_PATH_COMPONENT_PAT} "
            "(lowercase letters and digits, joined by '.', '_', '__' or dashes)",
        )


def _check_tag(tag: str, original: str) -> None:
    if not tag:
        raise _bad(original, "tag is empty after ':'")
    if not _TAG_RE.fullmatch(tag):
        raise _bad(
            original,
            f"tag {_q(tag)} must be 1-128 characters of [A-Za-z0-9_.-], not starting with . or -",
        )


def _parse_digest(value: Digest | str, original: str) -> Digest:
    if isinstance(value, Digest):
        return value
    if not isinstance(value, str):
        raise InvalidReference(f"invalid digest {value!r}: expected a string 'algorithm:hex'")
    if not value:
        raise _bad(original, "digest is empty after '@'")
    try:
        return Digest.parse(value)
    except InvalidDigest as exc:
        raise _bad(original, str(exc)) from None


@dataclass(frozen=True)
class Registry:
    """A registry host such as ``ghcr.io``, ``localhost:5000`` or ``[::1]:5000``.

    ``name`` is lowercased (hostnames are case-insensitive), and Docker Hub's
    aliases ``docker.io`` and ``registry-1.docker.io`` become ``index.docker.io``.
    """

    name: str

    def __post_init__(self) -> None:
        raw = _check_type(self.name, "registry")
        object.__setattr__(self, "name", _normalize_registry(raw, raw))

    @classmethod
    def parse(cls, value: str | Registry) -> Registry:
        """Parse ``host[:port]``; raise :class:`InvalidReference` naming the input."""
        if isinstance(value, Registry):
            return value
        return cls(value)

    @property
    def host(self) -> str:
        """The host without its port (brackets of an IPv6 address removed)."""
        name = self.name
        if name.startswith("["):
            return name[1 : name.index("]")]
        return name.partition(":")[0]

    @property
    def port(self) -> int | None:
        """The explicit port, if any."""
        name = self.name
        rest = name[name.index("]") + 1 :] if name.startswith("[") else name
        _, sep, port = rest.partition(":")
        return int(port) if sep else None

    @property
    def api_host(self) -> str:
        """The ``host[:port]`` to put in URLs: ``registry-1.docker.io`` for Docker Hub."""
        return DOCKER_HUB_API_HOST if self.is_docker_hub() else self.name

    def is_docker_hub(self) -> bool:
        return self.name == DEFAULT_REGISTRY

    def is_loopback(self) -> bool:
        """``localhost``, ``*.localhost``, 127.0.0.0/8 or ``::1``: never leaves the machine."""
        host = self.host
        if host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def scheme(self, insecure: bool = False) -> str:
        """``http`` for loopback registries or when ``insecure``; ``https`` otherwise."""
        return "http" if insecure or self.is_loopback() else "https"

    def url(self, insecure: bool = False) -> str:
        """The base URL, e.g. ``https://registry-1.docker.io``."""
        return f"{self.scheme(insecure)}://{self.api_host}"

    def repository(self, path: str) -> Repository:
        return Repository(self, path)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Repository:
    """A repository: a registry and a path such as ``library/ubuntu``.

    On Docker Hub a one-component path gets the implicit ``library/`` namespace.
    """

    registry: Registry
    path: str

    def __post_init__(self) -> None:
        registry = self.registry
        if isinstance(registry, str):
            registry = Registry(registry)
            object.__setattr__(self, "registry", registry)
        elif not isinstance(registry, Registry):
            raise InvalidReference(f"invalid registry {registry!r}: expected a Registry")
        path = _check_type(self.path, "repository path")
        _check_path(path, path)
        if registry.is_docker_hub() and "/" not in path:
            path = "library/" + path
            object.__setattr__(self, "path", path)
        counted = _LEGACY_HUB_DOMAIN if registry.is_docker_hub() else registry.name
        length = len(counted) + 1 + len(path)
        if length > NAME_TOTAL_LENGTH_MAX:
            raise _bad(
                f"{registry.name}/{path}",
                f"repository name must not be longer than {NAME_TOTAL_LENGTH_MAX} characters "
                f"(got {length} counting the registry)",
            )

    @classmethod
    def parse(
        cls, value: str | Repository, *, default_registry: str = DEFAULT_REGISTRY
    ) -> Repository:
        """Parse ``[registry/]path``; a tag or digest is an error here."""
        if isinstance(value, Repository):
            return value
        text = _check_type(value, "repository")
        if not text:
            raise _bad(text, "expected a repository such as 'ubuntu' or 'ghcr.io/org/app'")
        if "@" in text or ":" in text.rpartition("/")[2]:
            raise _bad(text, "expected a repository without a tag or digest")
        return _split_name(text, text, default_registry)

    @property
    def name(self) -> str:
        """The full name, e.g. ``index.docker.io/library/ubuntu``."""
        return f"{self.registry.name}/{self.path}"

    def tag(self, tag: str) -> Tag:
        return Tag(self, tag)

    def digest(self, digest: Digest | str) -> DigestRef:
        return DigestRef(self, _parse_digest(digest, f"{self.name}@{digest}"))

    def scope(self, action: str) -> str:
        """The token scope, e.g. ``repository:library/ubuntu:pull``."""
        return f"repository:{self.path}:{action}"

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Tag:
    """A repository and a tag, e.g. ``index.docker.io/library/ubuntu:22.04``."""

    repository: Repository
    tag: str = DEFAULT_TAG

    def __post_init__(self) -> None:
        if not isinstance(self.repository, Repository):
            raise InvalidReference(f"invalid repository {self.repository!r}: expected a Repository")
        tag = _check_type(self.tag, "tag")
        _check_tag(tag, f"{self.repository.name}:{tag}")

    @classmethod
    def parse(
        cls,
        value: str | Tag,
        *,
        default_tag: str = DEFAULT_TAG,
        default_registry: str = DEFAULT_REGISTRY,
        strict: bool = False,
    ) -> Tag:
        """Parse a reference that must name a tag (no digest); the tag defaults to ``latest``."""
        if isinstance(value, Tag):
            return value
        ref = parse_reference(
            value, default_tag=default_tag, default_registry=default_registry, strict=strict
        )
        if not isinstance(ref, Tag):
            raise _bad(value, "expected a tag reference, not a digest")
        return ref

    @property
    def context(self) -> Repository:
        return self.repository

    @property
    def registry(self) -> Registry:
        return self.repository.registry

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in a registry URL."""
        return self.tag

    @property
    def name(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.repository.name}:{self.tag}"


@dataclass(frozen=True)
class DigestRef:
    """A repository and a digest; ``tag`` keeps the tag of ``name:tag@digest`` for display.

    The digest alone identifies the content: the tag is never sent to a registry.
    """

    repository: Repository
    digest: Digest
    tag: str | None = field(default=None)

    def __post_init__(self) -> None:
        if not isinstance(self.repository, Repository):
            raise InvalidReference(f"invalid repository {self.repository!r}: expected a Repository")
        if not isinstance(self.digest, Digest):
            object.__setattr__(
                self, "digest", _parse_digest(self.digest, f"{self.repository.name}@{self.digest}")
            )
        if self.tag is not None:
            tag = _check_type(self.tag, "tag")
            _check_tag(tag, f"{self.repository.name}:{tag}@{self.digest}")

    @classmethod
    def parse(
        cls, value: str | DigestRef, *, default_registry: str = DEFAULT_REGISTRY
    ) -> DigestRef:
        """Parse a reference that must carry a digest."""
        if isinstance(value, DigestRef):
            return value
        ref = parse_reference(value, default_registry=default_registry)
        if not isinstance(ref, DigestRef):
            raise _bad(value, "expected a digest reference (name@sha256:...)")
        return ref

    @property
    def context(self) -> Repository:
        return self.repository

    @property
    def registry(self) -> Registry:
        return self.repository.registry

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/`` in a registry URL."""
        return str(self.digest)

    @property
    def name(self) -> str:
        return str(self)

    def without_tag(self) -> DigestRef:
        return DigestRef(self.repository, self.digest) if self.tag is not None else self

    def __str__(self) -> str:
        if self.tag is not None:
            return f"{self.repository.name}:{self.tag}@{self.digest}"
        return f"{self.repository.name}@{self.digest}"


Reference: TypeAlias = Tag | DigestRef


def _split_name(name: str, original: str, default_registry: str) -> Repository:
    """Split ``[registry/]path`` the ggcr way and build the repository."""
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry_name, path = first, rest
    else:
        registry_name, path = default_registry, name
    registry = Registry(_normalize_registry(registry_name, original))
    _check_path(path, original)
    try:
        return Repository(registry, path)
    except InvalidReference as exc:
        # Re-word with the caller's input rather than the normalised name.
        if "longer than" in str(exc):
            raise _bad(original, str(exc).split(": ", 1)[1]) from None
        raise


def parse_reference(
    value: str | Tag | DigestRef,
    *,
    default_tag: str = DEFAULT_TAG,
    default_registry: str = DEFAULT_REGISTRY,
    strict: bool = False,
) -> Reference:
    """Parse ``[registry/]path[:tag][@digest]`` into a :class:`Tag` or :class:`DigestRef`.

    ``strict`` refuses a reference without an explicit tag or digest instead of
    defaulting to ``default_tag``. A :class:`Tag` or :class:`DigestRef` is returned
    unchanged. Raises :class:`InvalidReference` with one line naming the input and
    what was expected.
    """
    if isinstance(value, (Tag, DigestRef)):
        return value
    text = _check_type(value, "reference")
    if not text:
        raise _bad(text, "expected a name such as 'ubuntu' or 'ghcr.io/org/app:tag'")
    if _IDENTIFIER_RE.fullmatch(text):
        raise _bad(text, "a 64-character hex string is an image ID, not a repository name")

    name_tag, at, digest_text = text.partition("@")
    digest = _parse_digest(digest_text, text) if at else None

    tag: str | None = None
    colon = name_tag.rfind(":")
    if colon > name_tag.rfind("/"):
        name, tag = name_tag[:colon], name_tag[colon + 1 :]
        _check_tag(tag, text)
    else:
        name = name_tag
    if not name:
        raise _bad(text, "repository name is empty")

    repository = _split_name(name, text, default_registry)
    if digest is not None:
        return DigestRef(repository, digest, tag)
    if tag is None:
        if strict:
            raise _bad(text, "expected an explicit :tag or @digest")
        tag = default_tag
        _check_tag(tag, f"{text}:{tag}")
    return Tag(repository, tag)


def familiar(ref: Reference | Repository) -> str:
    """Docker's short form for display: ``ubuntu:latest``, ``foo/bar@sha256:...``."""
    repository = ref if isinstance(ref, Repository) else ref.repository
    if repository.registry.is_docker_hub():
        path = repository.path
        rest = path.removeprefix("library/")
        short = rest if rest != path and "/" not in rest else path
    else:
        short = repository.name
    if isinstance(ref, Repository):
        return short
    if isinstance(ref, Tag):
        return f"{short}:{ref.tag}"
    if ref.tag is not None:
        return f"{short}:{ref.tag}@{ref.digest}"
    return f"{short}@{ref.digest}"
