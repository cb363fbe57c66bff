"""The package root's public API: complete, sorted, importable, and lazy where it promises."""

from __future__ import annotations

import subprocess
import sys

import pycrane


def test_all_is_sorted_and_unique() -> None:
    assert pycrane.__all__ == sorted(pycrane.__all__)
    assert len(set(pycrane.__all__)) == len(pycrane.__all__)


def test_every_exported_name_resolves() -> None:
    for name in pycrane.__all__:
        assert getattr(pycrane, name) is not None, name


def test_errors_share_one_base() -> None:
    for name in pycrane.errors.__all__:
        cls = getattr(pycrane.errors, name)
        assert name in pycrane.__all__, f"{name} is not re-exported from pycrane"
        if cls is not pycrane.errors.ErrorCode:  # the vocabulary of codes, not an exception
            assert issubclass(cls, pycrane.PycraneError), name


def test_unknown_attribute_raises_attribute_error() -> None:
    try:
        pycrane.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_import_is_lazy_for_heavy_subpackages() -> None:
    code = (
        "import sys, pycrane; "
        "print(sorted(m for m in ('pycrane.remote', 'pycrane.registry', 'pycrane.mutate', "
        "'urllib3') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    client_cls = pycrane.Client
    from pycrane.remote import Client

    assert client_cls is Client  # loaded from pycrane.remote on first use


def test_all_is_complete() -> None:
    # Every public name the package root defines or imports is exported (httpx's rule).
    # Submodules appear as attributes once imported; those meant for users are in __all__.
    helpers = {"annotations", "contextlib", "importlib", "TYPE_CHECKING", "Any"}
    public = {
        n
        for n, v in vars(pycrane).items()
        if not n.startswith("_") and n not in helpers and not isinstance(v, type(pycrane))
    }
    public |= set(pycrane._LAZY)  # type: ignore[attr-defined]
    # pycrane.random and pycrane.empty stay out: a star import would shadow stdlib random.
    public -= {"empty", "random"}
    assert public <= set(pycrane.__all__), public - set(pycrane.__all__)


def test_exports_say_pycrane_in_reprs() -> None:
    for name in pycrane.__all__:
        value = getattr(pycrane, name)
        if isinstance(value, type) or (callable(value) and not isinstance(value, type(pycrane))):
            assert value.__module__ == "pycrane", name
    assert repr(pycrane.Digest) == "<class 'pycrane.Digest'>"
