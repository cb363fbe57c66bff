"""The v1 model: documents keep their exact bytes and are digested over them, malformed
documents raise ManifestError naming the field, descriptors round-trip, and
VerifyingReader never lets bad content end cleanly."""

from __future__ import annotations

import base64
import copy
import gzip
import hashlib
import io
import json
from typing import Any, BinaryIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycrane.errors import (
    DigestMismatch,
    InvalidDigest,
    ManifestError,
    NotFoundError,
    SizeMismatch,
    VerificationError,
)
from pycrane.random import random_image, random_index, random_layer
from pycrane.v1 import mediatypes as mt
from pycrane.v1.config import ConfigFile
from pycrane.v1.descriptor import Descriptor
from pycrane.v1.digest import Digest, VerifyingReader
from pycrane.v1.image import BytesLayer, ImageBase, Layer, LayerBase, SimpleIndex, is_index
from pycrane.v1.manifest import Index, Manifest, canonical_json, detect_media_type, parse_manifest
from pycrane.v1.match import select
from pycrane.v1.platform import Platform


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


CONFIG: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "config": {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"]},
    "rootfs": {"type": "layers", "diff_ids": [_sha(b"a"), _sha(b"b")]},
    "history": [{"created_by": "ADD a"}, {"created_by": "ADD b"}],
    "x-unknown-field": {"kept": [1, 2.5, None, True]},
}


def _full_config() -> dict[str, Any]:
    """CONFIG with every field the model reads, so damage can reach each of them."""
    full = copy.deepcopy(CONFIG)
    full.update({"variant": "v2", "os.version": "1", "os.features": ["f"], "created": "now"})
    full["history"][0].update({"author": "me", "comment": "c", "empty_layer": False})
    return full


def _manifest_obj() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": {"mediaType": mt.OCI_CONFIG, "digest": _sha(b"cfg"), "size": 3},
        "layers": [
            {"mediaType": mt.OCI_LAYER_GZIP, "digest": _sha(b"l0"), "size": 2},
            {
                "mediaType": mt.OCI_LAYER_GZIP,
                "digest": _sha(b"l1"),
                "size": 2,
                "annotations": {"org.example": "é"},
            },
        ],
        "annotations": {"a": "b"},
    }


def _index_obj() -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": _sha(b"m0"),
                "size": 10,
                "platform": {"architecture": "amd64", "os": "linux"},
            },
            {
                "mediaType": mt.OCI_MANIFEST,
                "digest": _sha(b"m1"),
                "size": 11,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"},
            },
            {"mediaType": mt.OCI_MANIFEST, "digest": _sha(b"m2"), "size": 12},
        ],
    }


# An odd but valid spelling: keys out of order, odd whitespace, escapes, an unknown field.
ODD_MANIFEST = (
    b'{ "layers" : [\n\t{"size":2,"digest":"' + _sha(b"l0").encode() + b'",'
    b'"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip"}],\r\n'
    b'  "config":{"size" : 3 , "mediaType":"application/vnd.oci.image.config.v1+json",'
    b'"digest":"' + _sha(b"cfg").encode() + b'"},'
    b'"annotations":{"\\u00e9":"caf\\u00e9"},"x-extra":[1,2],'
    b'"schemaVersion":2 }\n'
)


# --- raw bytes are kept and digested -----------------------------------------------------------


def test_manifest_keeps_raw_bytes_exactly() -> None:
    m = Manifest.parse(ODD_MANIFEST)
    assert m.raw == ODD_MANIFEST
    assert str(m.digest) == _sha(ODD_MANIFEST)
    assert m.size == len(ODD_MANIFEST)
    assert m.media_type == mt.OCI_MANIFEST  # defaulted, not invented in the bytes
    assert m.annotations == {"é": "café"}
    assert m.config.digest == Digest.parse(_sha(b"cfg"))
    assert [str(d.digest) for d in m.layers] == [_sha(b"l0")]
    assert m.to_dict()["x-extra"] == [1, 2]
    # The test means something: re-serialising would change the digest.
    assert canonical_json(json.loads(ODD_MANIFEST)) != ODD_MANIFEST
    desc = m.descriptor()
    assert (desc.digest, desc.size, desc.media_type) == (m.digest, m.size, mt.OCI_MANIFEST)
    assert parse_manifest(ODD_MANIFEST) == m
    assert hash(parse_manifest(ODD_MANIFEST)) == hash(m)


def test_docker_media_types_and_hints() -> None:
    obj = _manifest_obj()
    obj["mediaType"] = mt.DOCKER_MANIFEST
    raw = json.dumps(obj, indent=3).encode()
    m = parse_manifest(raw, mt.DOCKER_MANIFEST)
    assert isinstance(m, Manifest) and m.media_type == mt.DOCKER_MANIFEST and m.raw == raw
    lst = _index_obj()
    lst["mediaType"] = mt.DOCKER_MANIFEST_LIST
    raw = json.dumps(lst).encode()
    idx = parse_manifest(raw)
    assert isinstance(idx, Index) and idx.media_type == mt.DOCKER_MANIFEST_LIST
    # Without a mediaType: the hint (a Content-Type header) wins, then the shape.
    del obj["mediaType"]
    raw = json.dumps(obj).encode()
    assert detect_media_type(raw, mt.DOCKER_MANIFEST + "; charset=utf-8") == mt.DOCKER_MANIFEST
    assert detect_media_type(raw) == mt.OCI_MANIFEST
    del lst["mediaType"]
    assert detect_media_type(json.dumps(lst).encode()) == mt.OCI_INDEX
    assert isinstance(parse_manifest(json.dumps(lst).encode()), Index)


def test_index_keeps_raw_bytes() -> None:
    raw = json.dumps(_index_obj(), indent=1, sort_keys=True).encode() + b"\n\n"
    idx = Index.parse(raw)
    assert idx.raw == raw and str(idx.digest) == _sha(raw) and idx.size == len(raw)
    assert [d.platform for d in idx.manifests] == [
        Platform("linux", "amd64"),
        Platform("linux", "arm64", "v8"),
        None,
    ]
    assert parse_manifest(raw) == idx


def test_config_keeps_raw_bytes_and_unknown_fields() -> None:
    raw = json.dumps(CONFIG, indent=2, ensure_ascii=True).encode()
    cfg = ConfigFile.parse(raw)
    assert cfg.raw == raw and str(cfg.digest) == _sha(raw) and cfg.size == len(raw)
    assert cfg.platform == Platform("linux", "amd64")
    assert [str(d) for d in cfg.diff_ids] == [_sha(b"a"), _sha(b"b")]
    assert [h.created_by for h in cfg.history] == ["ADD a", "ADD b"]
    assert cfg.config["Cmd"] == ["sh"]
    changed = cfg.to_dict()
    changed["config"]["Cmd"] = ["bash"]
    assert cfg.config["Cmd"] == ["sh"], "to_dict is a copy"
    again = ConfigFile.from_dict(changed)
    assert again.data["x-unknown-field"] == CONFIG["x-unknown-field"]
    assert again.raw == canonical_json(changed)
    assert again != cfg


def test_build_serialises_once() -> None:
    cfg = Descriptor.from_bytes(mt.OCI_CONFIG, b"{}")
    layer = Descriptor.from_bytes(mt.OCI_LAYER_GZIP, b"layer", annotations={"k": "v"})
    m = Manifest.build(cfg, [layer], annotations={"x": "y"})
    assert m.raw == canonical_json(json.loads(m.raw))
    assert Manifest.parse(m.raw) == m and m.layers == (layer,)
    idx = Index.build([m.descriptor(platform=Platform("linux", "amd64"))])
    assert Index.parse(idx.raw).manifests[0].digest == m.digest


_json_styles = st.fixed_dictionaries(
    {
        "indent": st.sampled_from([None, 0, 1, 2, 4, "\t"]),
        "sort_keys": st.booleans(),
        "ensure_ascii": st.booleans(),
        "separators": st.sampled_from([None, (",", ":"), (", ", ": "), (" ,", " : ")]),
    }
)


@settings(max_examples=100, deadline=None)
@given(_json_styles, st.sampled_from(["", "\n", "  \r\n"]))
def test_any_spelling_is_kept_and_digested(style: dict[str, Any], tail: str) -> None:
    for obj, parse in ((_manifest_obj(), Manifest.parse), (_index_obj(), Index.parse)):
        raw = (json.dumps(obj, **style) + tail).encode()
        doc = parse(raw)
        assert doc.raw == raw
        assert str(doc.digest) == _sha(raw)
        assert doc.to_dict() == obj
    raw = (json.dumps(CONFIG, **style) + tail).encode()
    cfg = ConfigFile.parse(raw)
    assert cfg.raw == raw and str(cfg.digest) == _sha(raw)


# --- malformed documents -----------------------------------------------------------------------


def _set(obj: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return out


_DELETE = object()

MANIFEST_ERRORS = [
    (["schemaVersion"], 1, "manifest.schemaVersion: expected 2"),
    (["schemaVersion"], _DELETE, "manifest.schemaVersion"),
    (["config"], _DELETE, "manifest.config: missing"),
    (["config"], None, "manifest.config: expected an object"),
    (["config", "digest"], "sha256:abc", "manifest.config.digest"),
    (["layers"], {}, "manifest.layers: expected a list"),
    (["layers", 1, "digest"], "sha256:" + "g" * 64, "manifest.layers[1].digest"),
    (["layers", 1, "digest"], 5, "manifest.layers[1].digest: expected a string"),
    (["layers", 1, "digest"], "md5:" + "a" * 32, "manifest.layers[1].digest"),
    (["layers", 0, "size"], -1, "manifest.layers[0].size"),
    (["layers", 0, "size"], "2", "manifest.layers[0].size"),
    (["layers", 0, "size"], True, "manifest.layers[0].size"),
    (["layers", 0, "size"], 2.0, "manifest.layers[0].size"),
    (["layers", 0, "mediaType"], _DELETE, "manifest.layers[0].mediaType"),
    (["layers", 0, "mediaType"], "", "manifest.layers[0].mediaType"),
    (["layers", 0, "urls"], "http://x", "manifest.layers[0].urls"),
    (["layers", 0, "urls"], [1], "manifest.layers[0].urls"),
    (["layers", 1, "annotations"], {"k": 1}, "manifest.layers[1].annotations"),
    (["layers", 0, "data"], "!!notbase64", "manifest.layers[0].data"),
    (["layers", 0, "data"], 7, "manifest.layers[0].data"),
    (["layers", 0, "artifactType"], 7, "manifest.layers[0].artifactType"),
    (["layers", 0, "platform"], {"os": "linux"}, "manifest.layers[0].platform"),
    (["layers", 0], "x", "manifest.layers[0]: expected an object"),
    (["annotations"], {"a": None}, "manifest.annotations"),
    (["annotations"], [], "manifest.annotations"),
    (["subject"], {"mediaType": "x", "digest": "nope", "size": 1}, "manifest.subject.digest"),
    (["artifactType"], 1, "manifest.artifactType"),
    (["mediaType"], mt.OCI_INDEX, "manifest.mediaType"),
    (["mediaType"], 5, "manifest.mediaType"),
]


@pytest.mark.parametrize(("path", "value", "fragment"), MANIFEST_ERRORS)
def test_malformed_manifest_names_the_field(path: list[Any], value: Any, fragment: str) -> None:
    raw = json.dumps(_set(_manifest_obj(), path, value)).encode()
    with pytest.raises(ManifestError) as info:
        Manifest.parse(raw)
    assert fragment in str(info.value)
    assert str(info.value).isprintable()


def test_served_media_type_must_agree() -> None:
    raw = json.dumps(_manifest_obj()).encode()
    with pytest.raises(ManifestError, match=r"manifest\.mediaType: document says"):
        Manifest.parse(raw, mt.DOCKER_MANIFEST)
    with pytest.raises(ManifestError, match=r"index\.mediaType"):
        Index.parse(json.dumps(_index_obj()).encode(), mt.DOCKER_MANIFEST_LIST)


INDEX_ERRORS = [
    (["manifests"], _DELETE, "index.manifests: expected a list"),
    (["manifests"], {}, "index.manifests: expected a list"),
    (["manifests", 2, "size"], None, "index.manifests[2].size"),
    (["manifests", 1, "platform"], [], "index.manifests[1].platform: expected an object"),
    (["manifests", 1, "platform", "architecture"], _DELETE, "index.manifests[1].platform"),
    (["manifests", 1, "platform", "variant"], 8, "index.manifests[1].platform.variant"),
    (["mediaType"], mt.OCI_MANIFEST, "index.mediaType"),
    (["schemaVersion"], "2", "index.schemaVersion"),
]


@pytest.mark.parametrize(("path", "value", "fragment"), INDEX_ERRORS)
def test_malformed_index_names_the_field(path: list[Any], value: Any, fragment: str) -> None:
    raw = json.dumps(_set(_index_obj(), path, value)).encode()
    with pytest.raises(ManifestError) as info:
        Index.parse(raw)
    assert fragment in str(info.value)


CONFIG_ERRORS = [
    (["rootfs", "diff_ids", 1], "sha256:xyz", "config.rootfs.diff_ids[1]"),
    (["rootfs", "diff_ids"], "x", "config.rootfs.diff_ids: expected a list"),
    (["rootfs"], [], "config.rootfs: expected an object"),
    (["architecture"], 64, "config.architecture: expected a string"),
    (["os"], ["linux"], "config.os: expected a string"),
    (["history"], {}, "config.history"),
    (["history", 0], "ADD", "config.history"),
    (["config"], "sh", "config.config: expected an object"),
    (["history", 1, "created_by"], 5, "config.history[1].created_by: expected a string"),
    (["history", 0, "empty_layer"], "no", "config.history[0].empty_layer"),
    (["os.features"], 5, "config.os.features"),
    (["os.features"], [5], "config.os.features"),
    (["os.version"], 10, "config.os.version"),
    (["variant"], 8, "config.variant"),
]


@pytest.mark.parametrize(("path", "value", "fragment"), CONFIG_ERRORS)
def test_malformed_config_names_the_field(path: list[Any], value: Any, fragment: str) -> None:
    raw = json.dumps(_set(CONFIG, path, value)).encode()
    with pytest.raises(ManifestError) as info:
        ConfigFile.parse(raw)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[]", "expected a JSON object"),
        (b"null", "expected a JSON object"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"n":' + b"1" * 5000 + b"}", "not valid JSON"),
        (b'{"schemaVersion":1,"fsLayers":[]}', "schema 1"),
        (b'{"schemaVersion":2,"mediaType":"text/plain"}', "unsupported media type"),
        (b'{"schemaVersion":2}', "cannot tell its media type"),
    ],
)
def test_not_a_document(raw: bytes, fragment: str) -> None:
    with pytest.raises(ManifestError, match=fragment):
        parse_manifest(raw)
    if fragment in ("not valid JSON", "nested too deeply", "expected a JSON object"):
        with pytest.raises(ManifestError, match=fragment):
            ConfigFile.parse(raw)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


@settings(max_examples=300, deadline=None)
@given(st.data(), _json_values, st.sampled_from(["manifest", "index", "config"]))
def test_a_damaged_document_raises_manifest_error_or_parses(
    data: st.DataObject, value: Any, kind: str
) -> None:
    """Replace any one field by any JSON value: never an exception other than ManifestError."""
    base = {"manifest": _manifest_obj, "index": _index_obj, "config": _full_config}[kind]()
    path = data.draw(st.sampled_from(_paths(base)))
    raw = json.dumps(_set(base, list(path), value)).encode()
    try:
        if kind == "config":
            doc: Any = ConfigFile.parse(raw)
            _ = (doc.platform, doc.diff_ids, doc.history, doc.config)
        else:
            doc = parse_manifest(raw)
    except ManifestError as e:
        assert str(e).isprintable()
        return
    assert doc.raw == raw


# --- descriptors -------------------------------------------------------------------------------


def test_descriptor_round_trip_with_every_field() -> None:
    d = Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=Digest.from_bytes(b"x"),
        size=1,
        urls=("https://example.com/x",),
        annotations={"org.opencontainers.image.ref.name": "v1", "k": "é"},
        platform=Platform("linux", "arm", "v7", None, (), ("neon",)),
        artifact_type="application/vnd.example+json",
        data=b"x",
    )
    obj = d.to_dict()
    assert list(obj) == [
        "mediaType",
        "digest",
        "size",
        "urls",
        "annotations",
        "data",
        "platform",
        "artifactType",
    ]
    assert obj["data"] == base64.b64encode(b"x").decode()
    assert Descriptor.from_dict(obj) == d
    assert Descriptor.from_dict(json.loads(json.dumps(obj))) == d
    assert d.ref_name == "v1"
    assert d.with_annotations(k=None).annotations == {"org.opencontainers.image.ref.name": "v1"}
    assert d.with_platform(None).platform is None
    assert hash(d) == hash(Descriptor.from_dict(obj))


def test_descriptor_minimal_and_empty_data() -> None:
    d = Descriptor.from_bytes(mt.OCI_EMPTY, b"{}")
    assert d.to_dict() == {"mediaType": mt.OCI_EMPTY, "digest": _sha(b"{}"), "size": 2}
    assert Descriptor.from_dict(d.to_dict()) == d
    empty = Descriptor(mt.OCI_EMPTY, Digest.from_bytes(b""), 0, data=b"")
    assert empty.to_dict()["data"] == ""
    assert Descriptor.from_dict(empty.to_dict()) == empty


_texts = st.text(st.characters(codec="utf-8"), max_size=8)
ALGS = ["sha256", "sha512"]


@st.composite
def descriptors(draw: st.DrawFn) -> Descriptor:
    data = draw(st.one_of(st.none(), st.binary(max_size=16)))
    plat = draw(
        st.one_of(
            st.none(),
            st.builds(
                Platform,
                st.sampled_from(["linux", "windows"]),
                st.sampled_from(["amd64", "arm64", "arm"]),
                st.sampled_from([None, "v7", "v8"]),
                st.sampled_from([None, "10.0.1"]),
                st.lists(_texts, max_size=2).map(tuple),
                st.lists(_texts, max_size=2).map(tuple),
            ),
        )
    )
    return Descriptor(
        media_type=draw(st.sampled_from([mt.OCI_MANIFEST, mt.OCI_LAYER_ZSTD, "x/y"])),
        digest=Digest.from_bytes(draw(st.binary(max_size=8)), draw(st.sampled_from(ALGS))),
        size=draw(st.integers(0, 2**63)),
        urls=tuple(draw(st.lists(_texts, max_size=2))),
        annotations=draw(st.dictionaries(_texts, _texts, max_size=3)),
        platform=plat,
        artifact_type=draw(st.one_of(st.none(), st.text(min_size=1, max_size=8))),
        data=data,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(descriptors())
def test_descriptor_round_trips(d: Descriptor) -> None:
    again = Descriptor.from_dict(json.loads(json.dumps(d.to_dict())))
    assert again == d


# --- VerifyingReader ---------------------------------------------------------------------------


def _drain(reader: VerifyingReader, sizes: list[int]) -> bytes:
    out = bytearray()
    i = 0
    while True:
        n = sizes[i % len(sizes)] if sizes else -1
        i += 1
        chunk = reader.read(n)
        if not chunk and n != 0:
            return bytes(out)
        out += chunk


CONTENT = bytes(range(256)) * 40


@pytest.mark.parametrize("sizes", [[], [1], [7, 1000], [len(CONTENT)], [len(CONTENT) + 5]])
def test_verifying_reader_accepts_good_content(sizes: list[int]) -> None:
    d = Digest.from_bytes(CONTENT)
    assert _drain(VerifyingReader(io.BytesIO(CONTENT), d, len(CONTENT), "blob"), sizes) == CONTENT
    assert _drain(VerifyingReader(io.BytesIO(CONTENT), d, None, "blob"), sizes) == CONTENT
    assert _drain(VerifyingReader(io.BytesIO(CONTENT), d, -1, "blob"), sizes) == CONTENT


def test_verifying_reader_short_stream() -> None:
    d = Digest.from_bytes(CONTENT)
    r = VerifyingReader(io.BytesIO(CONTENT[:-1]), d, len(CONTENT), "layer sha256:x")
    with pytest.raises(SizeMismatch) as info:
        _drain(r, [4096])
    assert (info.value.expected, info.value.actual) == (len(CONTENT), len(CONTENT) - 1)
    assert str(info.value).startswith("layer sha256:x: size mismatch")


def test_verifying_reader_long_stream_never_hands_out_the_excess() -> None:
    d = Digest.from_bytes(CONTENT)
    got = bytearray()
    r = VerifyingReader(io.BytesIO(CONTENT + b"!"), d, len(CONTENT), "blob")
    with pytest.raises(SizeMismatch):
        while chunk := r.read(1000):
            got += chunk
    assert bytes(got) == CONTENT[: len(got)] and len(got) <= len(CONTENT)


def test_verifying_reader_corrupt_stream() -> None:
    d = Digest.from_bytes(CONTENT)
    bad = bytearray(CONTENT)
    bad[1234] ^= 1
    for size in (len(CONTENT), None):
        r = VerifyingReader(io.BytesIO(bytes(bad)), d, size, "blob")
        with pytest.raises(DigestMismatch) as info:
            _drain(r, [333])
        assert info.value.expected == str(d)
        assert info.value.actual == _sha(bytes(bad))


def test_verifying_reader_empty_and_sha512_and_readinto() -> None:
    r = VerifyingReader(io.BytesIO(b""), Digest.from_bytes(b""), 0, "empty")
    assert r.read() == b""
    with pytest.raises(SizeMismatch):
        VerifyingReader(io.BytesIO(b"x"), Digest.from_bytes(b""), 0, "empty").read()
    d512 = Digest.from_bytes(CONTENT, "sha512")
    raw = io.BytesIO(CONTENT)
    with VerifyingReader(raw, d512, len(CONTENT), "blob") as r:
        buf = bytearray(4000)
        total = bytearray()
        while n := r.readinto(buf):
            total += buf[:n]
        assert bytes(total) == CONTENT
    assert raw.closed


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=3000),
    st.sampled_from(["truncate", "extend", "flip", "none"]),
    st.data(),
    st.lists(st.integers(1, 700), min_size=1, max_size=4),
    st.booleans(),
)
def test_verifying_reader_bad_content_never_ends_cleanly(
    content: bytes, damage: str, data: st.DataObject, sizes: list[int], known_size: bool
) -> None:
    d = Digest.from_bytes(content)
    stream = content
    if damage == "truncate" and content:
        stream = content[: data.draw(st.integers(0, len(content) - 1))]
    elif damage == "extend":
        stream = content + data.draw(st.binary(min_size=1, max_size=50))
    elif damage == "flip" and content:
        i = data.draw(st.integers(0, len(content) - 1))
        stream = content[:i] + bytes([content[i] ^ 0x80]) + content[i + 1 :]
    r = VerifyingReader(io.BytesIO(stream), d, len(content) if known_size else None, "blob")
    if stream == content:
        assert _drain(r, sizes) == content
    else:
        with pytest.raises(VerificationError):
            _drain(r, sizes)


# --- the lazy Image / Layer / ImageIndex abstractions ------------------------------------------


class _TamperedLayer(LayerBase):
    """A layer whose source serves other bytes than its descriptor promises."""

    def __init__(self, honest: BytesLayer, served: bytes) -> None:
        super().__init__()
        self._desc = honest.descriptor()
        self._served = served

    def descriptor(self) -> Descriptor:
        return self._desc

    def compressed(self) -> BinaryIO:
        return io.BytesIO(self._served)


def test_image_layers_diff_ids_and_lookup() -> None:
    img = random_image(3, 2000, duplicate_empty_layers=2, seed=1)
    assert random_image(3, 2000, duplicate_empty_layers=2, seed=1).digest() == img.digest()
    assert random_image(3, 2000, duplicate_empty_layers=2, seed=2).digest() != img.digest()
    m = img.manifest()
    assert m.raw == img.raw_manifest() and img.digest() == Digest.from_bytes(m.raw)
    layers = img.layers()
    assert len(layers) == 5 and layers[3].digest() == layers[4].digest()
    cfg = img.config_file()
    assert img.config_name() == cfg.digest == Digest.from_bytes(img.raw_config())
    for layer, diff_id in zip(layers, cfg.diff_ids, strict=True):
        with layer.compressed() as f:
            raw_tar = gzip.decompress(f.read())
        assert layer.diff_id() == diff_id == Digest.from_bytes(raw_tar)
        with layer.uncompressed() as u:
            assert u.read() == raw_tar
        # A layer that does not know its diff_id computes the same one.
        assert BytesLayer(layer.compressed().read(), layer.media_type()).diff_id() == diff_id
    assert img.layer_by_digest(layers[1].digest()) is layers[1]
    assert img.layer_by_digest(img.config_name()).compressed().read() == img.raw_config()
    assert img.layer_by_diff_id(cfg.diff_ids[2]).digest() == layers[2].digest()
    with pytest.raises(NotFoundError):
        img.layer_by_digest(Digest.from_bytes(b"nope"))
    desc = img.descriptor()
    assert (desc.digest, desc.size, desc.media_type) == (m.digest, m.size, m.media_type)


def test_a_tampered_layer_fails_verification() -> None:
    honest = random_layer(5000, seed=3)
    good = honest.data
    corrupt = good[:100] + bytes([good[100] ^ 1]) + good[101:]
    for served, error in (
        (corrupt, DigestMismatch),
        (good[:-1], SizeMismatch),
        (good + b"x", SizeMismatch),
    ):
        layer = _TamperedLayer(honest, served)
        with pytest.raises(error), layer.verified() as r:
            while r.read(1000):
                pass
    with _TamperedLayer(honest, good).verified() as r:
        assert r.read() == good


def test_index_children_and_platforms() -> None:
    idx = random_index(("linux/amd64", "linux/arm64/v8", "linux/arm/v7"), seed=4)
    assert is_index(idx) and not is_index(random_image(1, 10, seed=1))
    im = idx.index_manifest()
    assert idx.digest() == Digest.from_bytes(idx.raw_manifest()) == im.digest
    plats = [str(d.platform) for d in im.manifests]
    assert plats == ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    arm64 = select(im.manifests, "linux/arm64")
    assert arm64 is im.manifests[1]
    child = idx.image(arm64.digest)
    assert child.config_file().platform == Platform("linux", "arm64", "v8")
    assert child.digest() == arm64.digest and child.size() == arm64.size
    with pytest.raises(ManifestError, match="is an image, not an index"):
        idx.image_index(arm64.digest)
    with pytest.raises(NotFoundError):
        idx.image(Digest.from_bytes(b"nope"))
    nested = SimpleIndex.build([(None, idx)])
    assert nested.image_index(idx.digest()) is idx
    with pytest.raises(ManifestError, match="is an index, not an image"):
        nested.image(idx.digest())
    assert [d.digest for d, _ in nested.children()] == [idx.digest()]
    assert nested.index_manifest().manifests[0].platform is None


def test_an_image_whose_manifest_is_an_index_says_so() -> None:
    idx = random_index(("linux/amd64",), seed=5)

    class Confused(ImageBase):
        def raw_manifest(self) -> bytes:
            return idx.raw_manifest()

        def raw_config(self) -> bytes:
            return b"{}"

        def layer_for(self, descriptor: Descriptor, diff_id: Digest | None) -> Layer:
            raise AssertionError("not reached")

    with pytest.raises(ManifestError, match="expected an image, got an index"):
        Confused().manifest()


# --- digests -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=140),
        st.tuples(
            st.sampled_from(["sha256", "sha512", "SHA256", "md5", ""]),
            st.text("0123456789abcdefABCDEF:g", max_size=130),
        ).map(":".join),
    )
)
def test_digest_parse_raises_invalid_digest_or_round_trips(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidDigest as e:
        assert isinstance(e, ValueError) and str(e).isprintable()
        return
    assert str(d) == text and Digest.parse(str(d)) == d
    assert len(d.hex) == {"sha256": 64, "sha512": 128}[d.algorithm]


@pytest.mark.parametrize(
    "bad", [("sha256", 5), (None, "a" * 64), ("sha256", "A" * 64), ("sha1", "a" * 40)]
)
def test_digest_constructor_validates(bad: tuple[Any, Any]) -> None:
    with pytest.raises(InvalidDigest):
        Digest(*bad)


def test_digest_of_known_content() -> None:
    assert str(Digest.from_bytes(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert Digest.from_bytes(b"abc", "sha512").hex == hashlib.sha512(b"abc").hexdigest()
