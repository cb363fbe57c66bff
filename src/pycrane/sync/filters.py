"""Which tags of a repository a sync copies: exact names, globs, regexes, semver ranges, latest N.

A :class:`TagFilter` selects a tag when it matches any of ``exact``, ``glob``,
``regex`` or ``semver`` (every tag when none is given) and no ``exclude`` glob;
``latest`` then keeps the N highest semantic versions of what was selected (tags
that are not versions are dropped). Versions are read leniently, as registries
tag them: ``v1.2.3``, ``1.2`` (= 1.2.0), ``1.2.3-rc.1`` (a pre-release).

Ranges follow npm's syntax: comparators joined by spaces (all must hold) and
``||`` (either side): ``>=1.2 <2``, ``^1.4``, ``~2.1.0``, ``1.x``, ``=1.2.3``, ``*``.
A pre-release matches only a range that names a pre-release itself.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import total_ordering

__all__ = ["SemverRange", "TagFilter", "Version"]

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)(?:\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?)?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A semantic version; ordering follows semver 2.0 (pre-releases before the release)."""

    major: int
    minor: int
    patch: int
    pre: tuple[int | str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version | None:
        m = _VERSION.match(text)
        if m is None:
            return None
        pre: tuple[int | str, ...] = ()
        if m["pre"]:
            pre = tuple(int(p) if p.isdigit() else p for p in m["pre"].split("."))
        return cls(int(m["major"]), int(m["minor"] or 0), int(m["patch"] or 0), pre)

    def _key(self) -> tuple[object, ...]:
        # A release sorts after its pre-releases; numeric identifiers before alphanumeric.
        pre = tuple((0, p, "") if isinstance(p, int) else (1, 0, p) for p in self.pre)
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, pre)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()


_COMPARATOR = re.compile(r"^(?P<op>\^|~|>=|<=|>|<|=)?\s*(?P<ver>v?[0-9xX*][0-9A-Za-z.+*-]*)$")


def _partial(text: str) -> tuple[list[int], tuple[int | str, ...]]:
    """``1.2.x`` -> ([1, 2], ()); ``1.2.3-rc.1`` -> ([1, 2, 3], ("rc", 1))."""
    text = text.lstrip("v").split("+", 1)[0]
    core, _, pre = text.partition("-")
    nums: list[int] = []
    for part in core.split("."):
        if part in ("x", "X", "*"):
            break
        if not part.isdigit():
            raise ValueError(f"not a version: {text!r}")
        nums.append(int(part))
    if len(nums) > 3:
        raise ValueError(f"not a version: {text!r}")
    pre_t = tuple(int(p) if p.isdigit() else p for p in pre.split(".")) if pre else ()
    return nums, pre_t


def _bounds(op: str, text: str) -> list[tuple[str, Version]]:
    nums, pre = _partial(text)
    full = nums + [0] * (3 - len(nums))
    v = Version(full[0], full[1], full[2], pre)
    if not nums:
        return []  # "*": anything
    if op in ("", "="):
        if len(nums) == 3:
            return [("=", v)]
        top = [nums[0] + 1, 0, 0] if len(nums) == 1 else [nums[0], nums[1] + 1, 0]
        return [(">=", v), ("<", Version(top[0], top[1], top[2]))]
    if op == "^":
        if nums[0] > 0 or len(nums) == 1:
            upper = Version(nums[0] + 1, 0, 0)
        elif len(nums) == 2 or nums[1] > 0:
            upper = Version(0, nums[1] + 1, 0)
        else:
            upper = Version(0, 0, nums[2] + 1)
        return [(">=", v), ("<", upper)]
    if op == "~":
        upper = Version(nums[0] + 1, 0, 0) if len(nums) == 1 else Version(nums[0], nums[1] + 1, 0)
        return [(">=", v), ("<", upper)]
    if op in (">", "<=") and len(nums) < 3:
        # ">1.2" means above every 1.2.x; "<=1.2" includes them.
        upper = Version(nums[0] + 1, 0, 0) if len(nums) == 1 else Version(nums[0], nums[1] + 1, 0)
        return [(">=", upper)] if op == ">" else [("<", upper)]
    return [(op, v)]


@dataclass(frozen=True)
class SemverRange:
    """An npm-style version range; ``str()`` is the text it was parsed from."""

    text: str
    alternatives: tuple[tuple[tuple[str, Version], ...], ...]
    allows_pre: bool

    @classmethod
    def parse(cls, text: str) -> SemverRange:
        alts = []
        for alt in text.split("||"):
            alt = re.sub(r"(\^|~|>=|<=|>|<|=)\s+", r"\1", alt.strip())
            if " - " in alt:
                lo, _, hi = alt.partition(" - ")
                alt = f">={lo.strip()} <={hi.strip()}"
            bounds: list[tuple[str, Version]] = []
            for token in alt.split():
                m = _COMPARATOR.match(token)
                if m is None:
                    raise ValueError(f"semver range {text!r}: cannot read {token!r}")
                try:
                    bounds.extend(_bounds(m["op"] or "", m["ver"]))
                except ValueError as e:
                    raise ValueError(f"semver range {text!r}: {e}") from None
            alts.append(tuple(bounds))
        return cls(text, tuple(alts), "-" in text.replace(" - ", " "))

    def __str__(self) -> str:
        return self.text

    def contains(self, v: Version) -> bool:
        if v.pre and not self.allows_pre:
            return False
        return any(all(_holds(v, op, b) for op, b in alt) for alt in self.alternatives)


def _holds(v: Version, op: str, b: Version) -> bool:
    if op == "=":
        return v == b
    if op == ">=":
        return v >= b
    if op == "<=":
        return v <= b
    if op == ">":
        return v > b
    return v < b


@dataclass(frozen=True)
class TagFilter:
    """Which tags to copy (see the module docstring); the default copies every tag."""

    exact: tuple[str, ...] = ()
    glob: tuple[str, ...] = ()
    regex: tuple[str, ...] = ()
    semver: str | None = None
    latest: int | None = None
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for r in self.regex:
            try:
                re.compile(r)
            except re.error as e:
                raise ValueError(f"tag regex {r!r}: {e}") from None
        if self.semver is not None:
            SemverRange.parse(self.semver)
        if self.latest is not None and self.latest < 1:
            raise ValueError("latest must be at least 1")

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TagFilter:
        def strs(key: str) -> tuple[str, ...]:
            v = d.get(key) or ()
            return tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else (str(v),)

        latest = d.get("latest")
        semver = d.get("semver")
        return cls(
            exact=strs("exact"),
            glob=strs("glob"),
            regex=strs("regex"),
            semver=None if semver is None else str(semver),
            latest=None if latest is None else int(str(latest)),
            exclude=strs("exclude"),
        )

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key in ("exact", "glob", "regex", "exclude"):
            if getattr(self, key):
                out[key] = list(getattr(self, key))
        if self.semver is not None:
            out["semver"] = self.semver
        if self.latest is not None:
            out["latest"] = self.latest
        return out

    def _selects(
        self, tag: str, rng: SemverRange | None, patterns: Sequence[re.Pattern[str]]
    ) -> bool:
        if any(fnmatch.fnmatchcase(tag, g) for g in self.exclude):
            return False
        if not (self.exact or self.glob or self.regex or rng is not None):
            return True
        if tag in self.exact or any(fnmatch.fnmatchcase(tag, g) for g in self.glob):
            return True
        if any(p.search(tag) for p in patterns):
            return True
        if rng is not None:
            v = Version.parse(tag)
            return v is not None and rng.contains(v)
        return False

    def apply(self, tags: Iterable[str]) -> list[str]:
        """The selected tags, in the order given (``latest``: highest version first)."""
        rng = SemverRange.parse(self.semver) if self.semver is not None else None
        patterns = [re.compile(r) for r in self.regex]
        chosen = [t for t in tags if self._selects(t, rng, patterns)]
        if self.latest is None:
            return chosen
        versioned = [(v, t) for t in chosen if (v := Version.parse(t)) is not None]
        versioned.sort(key=lambda vt: (vt[0], vt[1]), reverse=True)
        return [t for _, t in versioned[: self.latest]]
