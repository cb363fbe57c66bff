"""Rebase: move an image's own layers from one base image onto another."""

from __future__ import annotations

from collections.abc import Callable

from pycrane.errors import ManifestError
from pycrane.mutate.image import (
    JSON,
    DerivedImage,
    RetypedLayer,
    docker_layer_type,
    oci_layer_type,
)
from pycrane.mutate.ops import ANNOTATION_BASE_DIGEST, ANNOTATION_BASE_NAME
from pycrane.name import parse_reference
from pycrane.v1 import mediatypes as mt
from pycrane.v1.image import Image, Layer

__all__ = ["rebase"]


def _non_empty_history(history: list[JSON], n_layers: int) -> int:
    """How many history entries cover the first ``n_layers`` layers (empty ones included)."""
    seen = 0
    for i, h in enumerate(history):
        if seen == n_layers:
            return i
        if not h.get("empty_layer"):
            seen += 1
    return len(history)


def rebase(
    img: Image,
    old_base: Image | None = None,
    new_base: Image | None = None,
    *,
    resolve: Callable[[str], Image] | None = None,
) -> Image:
    """``img`` with the layers of ``old_base`` replaced by those of ``new_base``.

    ``old_base``'s layers must be a prefix of ``img``'s. When a base is not given it
    is inferred from ``img``'s ``org.opencontainers.image.base.name`` and
    ``base.digest`` annotations through ``resolve`` (a reference -> image function,
    e.g. a registry pull): old base = ``name@digest``, new base = ``name``. The
    result keeps ``img``'s config, takes os/architecture from the new base, stitches
    the histories and records the new base in the same annotations.
    """
    ann = dict(img.manifest().annotations)
    base_name = ann.get(ANNOTATION_BASE_NAME)
    what = f"image {img.digest()}"
    if old_base is None or new_base is None:
        if not base_name or (old_base is None and not ann.get(ANNOTATION_BASE_DIGEST)):
            raise ManifestError(
                f"{what}: cannot infer the base images: pass old_base and new_base, or annotate "
                f"the image with {ANNOTATION_BASE_NAME} and {ANNOTATION_BASE_DIGEST}"
            )
        if resolve is None:
            raise ManifestError(
                f"{what}: base {base_name} comes from annotations; pass resolve= to fetch it"
            )
        if old_base is None:
            repo = parse_reference(base_name).repository.name
            old_base = resolve(f"{repo}@{ann[ANNOTATION_BASE_DIGEST]}")
        if new_base is None:
            new_base = resolve(base_name)
    old_layers = old_base.manifest().layers
    layers = img.manifest().layers
    if len(old_layers) > len(layers):
        raise ManifestError(
            f"{what}: not based on {old_base.digest()}: the old base has {len(old_layers)} "
            f"layers, the image only {len(layers)}"
        )
    for i, (a, b) in enumerate(zip(old_layers, layers, strict=False)):
        if a.digest != b.digest:
            raise ManifestError(
                f"{what}: not based on {old_base.digest()}: layer {i} is {b.digest}, "
                f"the old base has {a.digest}"
            )
    top_layers = img.layers()[len(old_layers) :]
    # The new base's layers are described in the image's manifest family (same bytes).
    retype = docker_layer_type if img.media_type() == mt.DOCKER_MANIFEST else oci_layer_type
    base_layers: list[Layer] = []
    for layer in new_base.layers():
        want = retype(layer.media_type())
        base_layers.append(layer if want == layer.media_type() else RetypedLayer(layer, want))
    new_layers = base_layers + top_layers
    new_cfg = new_base.config_file()
    orig_cfg = img.config_file()
    old_cfg = old_base.config_file()

    def edit_config(cfg: JSON) -> JSON:
        for key in ("os", "architecture", "variant", "os.version", "os.features"):
            if key in new_cfg.data:
                cfg[key] = new_cfg.data[key]
            else:
                cfg.pop(key, None)
        ids = [str(d) for d in new_cfg.diff_ids] + [
            str(d) for d in orig_cfg.diff_ids[len(old_layers) :]
        ]
        cfg["rootfs"] = {"type": "layers", "diff_ids": ids}
        orig_hist: list[JSON] = [dict(h) for h in orig_cfg.data.get("history") or []]
        old_hist: list[JSON] = list(old_cfg.data.get("history") or [])
        skip = len(old_hist) if old_hist else _non_empty_history(orig_hist, len(old_layers))
        hist = [dict(h) for h in new_cfg.data.get("history") or []] + orig_hist[skip:]
        if hist:
            cfg["history"] = hist
        else:
            cfg.pop("history", None)
        return cfg

    new_digest = str(new_base.digest())

    def edit_manifest(obj: JSON) -> JSON:
        a = dict(obj.get("annotations") or {})
        if ANNOTATION_BASE_DIGEST in a or ANNOTATION_BASE_NAME in a:
            a[ANNOTATION_BASE_DIGEST] = new_digest
        if a:
            obj["annotations"] = a
        return obj

    return DerivedImage(img, config=edit_config, layers=new_layers, manifest=edit_manifest)
