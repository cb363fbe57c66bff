"""A small JSON Schema validator: the subset ``schema.json`` uses, with one-line errors.

Keywords: ``type`` (one or a list), ``properties``, ``required``,
``additionalProperties`` (a boolean or a schema), ``items``, ``enum``, ``minimum``,
``minItems``, ``minLength``, ``pattern`` (strings only) and local ``$ref``
(``#/$defs/...``). The schema file stays a standard one, so editors and other
tools can check a configuration with it; pycrane needs no jsonschema package.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from typing import Any

__all__ = ["SchemaError", "load_schema", "validate"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


class SchemaError(ValueError):
    """The document does not follow the schema; ``str()`` says where and why."""


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The sync configuration's JSON Schema (``pycrane/sync/schema.json``)."""
    text = resources.files("pycrane.sync").joinpath("schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _is(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[kind])


def _resolve(root: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = str(node["$ref"])
        if not ref.startswith("#/"):
            raise ValueError(f"schema: only local $ref is supported, not {ref}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def _where(path: str) -> str:
    return path or "the document"


def validate(doc: Any, schema: dict[str, Any] | None = None) -> None:
    """Raise :class:`SchemaError` naming the first place ``doc`` breaks ``schema``."""
    root = schema if schema is not None else load_schema()
    _check(root, root, doc, "")


def _check(root: dict[str, Any], node: dict[str, Any], value: Any, path: str) -> None:
    node = _resolve(root, node)
    kinds = node.get("type")
    if kinds is not None:
        allowed = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_is(value, k) for k in allowed):
            raise SchemaError(f"{_where(path)}: must be {' or '.join(allowed)}")
    if "enum" in node and value not in node["enum"]:
        choices = ", ".join(json.dumps(c) for c in node["enum"])
        raise SchemaError(f"{_where(path)}: must be one of {choices}")
    if isinstance(value, str):
        if len(value) < int(node.get("minLength", 0)):
            raise SchemaError(f"{_where(path)}: must not be empty")
        if "pattern" in node and re.search(str(node["pattern"]), value) is None:
            raise SchemaError(f"{_where(path)}: {value!r} does not match {node['pattern']}")
    if _is(value, "number") and "minimum" in node and value < node["minimum"]:
        raise SchemaError(f"{_where(path)}: must be at least {node['minimum']}")
    if isinstance(value, list):
        if len(value) < int(node.get("minItems", 0)):
            raise SchemaError(f"{_where(path)}: needs at least {node['minItems']} item(s)")
        if "items" in node:
            for i, item in enumerate(value):
                _check(root, node["items"], item, f"{path}[{i}]")
    if isinstance(value, dict):
        props: dict[str, Any] = node.get("properties", {})
        for key in node.get("required", ()):
            if key not in value:
                raise SchemaError(f"{_where(path)}: {key!r} is required")
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            extra = node.get("additionalProperties", True)
            if key in props:
                _check(root, props[key], item, sub)
            elif extra is False:
                known = ", ".join(sorted(props))
                raise SchemaError(f"{_where(path)}: unknown key {key!r} (known: {known})")
            elif isinstance(extra, dict):
                _check(root, extra, item, sub)
