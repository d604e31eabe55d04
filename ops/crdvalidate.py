"""Validate custom resources against CustomResourceDefinition schemas offline, the way the API server would.

What the API server does and this module copies: it drops null fields, fills `default:` values of the structural
schema, then validates; a field the schema does not declare is an error unless the node (or an ancestor up to the
nearest declared object) sets `x-kubernetes-preserve-unknown-fields: true`; `x-kubernetes-int-or-string` accepts an
integer or a string; `x-kubernetes-embedded-resource` objects may carry apiVersion/kind/metadata.

The CRDs are NOT part of this repository: they are looked up in the shared reference folder (env
`ARMED_SHARED_CRDS`, else `../shared/crds` relative to the repository root); `find_crd_dir()` returns None when
neither exists and callers skip or refuse with that reason.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def find_crd_dir() -> Path | None:
    """The shared CRD folder: $ARMED_SHARED_CRDS when set, else ../shared/crds next to the repository; None if
    absent."""
    env = os.environ.get("ARMED_SHARED_CRDS")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "crds"]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.yaml")):
            return c
    return None


class CrdValidationError(ValueError):
    """A custom resource the API server would reject (422); `errors` lists `path: message` lines."""

    def __init__(self, kind: str, name: str, errors: list[str]):
        self.kind, self.name, self.errors = kind, name, errors
        super().__init__(f"{kind} {name!r} is invalid: " + "; ".join(errors[:10]))


@dataclass(frozen=True)
class CrdVersion:
    group: str
    kind: str
    plural: str
    version: str
    schema: dict[str, Any]
    namespaced: bool


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Fill `default:` of declared properties that are absent, recursively (objects, arrays, maps)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = dict(value)
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out:
                if name not in props:
                    out[name] = apply_defaults(out[name], extra)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema that rejects undeclared fields the way a structural CRD schema does."""
    node = {k: v for k, v in schema.items() if k not in ("default",)}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    embedded = node.get("x-kubernetes-embedded-resource", False)
    preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node:
        props = {k: strict_schema(v) for k, v in node["properties"].items()}
        if embedded:
            for key in ("apiVersion", "kind"):
                props.setdefault(key, {"type": "string"})
            props.setdefault("metadata", {"type": "object"})
        node["properties"] = props
    if isinstance(node.get("items"), dict):
        node["items"] = strict_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = strict_schema(node["additionalProperties"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in node and key in schema:
            node[key] = [strict_schema(s) for s in node[key]]
    if node.get("type") == "object" and "additionalProperties" not in node and not preserve:
        # Declared object: only its properties. A bare `type: object` with neither properties nor
        # preserve-unknown-fields is pruned to {} by the server; we accept it empty only.
        node["additionalProperties"] = False
    return node


def _crd_docs(path: Path) -> list[Any]:
    """The YAML documents of a CRD file, through a JSON cache under .cache/ (YAML parsing of the 1 MB KubeRay
    CRDs takes seconds; JSON tens of milliseconds). The cache key is the file's content hash."""
    raw = path.read_bytes()
    cache = REPO_ROOT / ".cache" / "crd-json" / f"{hashlib.sha256(raw).hexdigest()[:32]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    docs = list(yaml.load_all(raw.decode("utf-8"), Loader=_Loader))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(docs), encoding="utf-8")
        tmp.replace(cache)
    except OSError:
        pass
    return docs


@functools.cache
def _load_crds(crd_dir: str) -> dict[tuple[str, str], CrdVersion]:
    out: dict[tuple[str, str], CrdVersion] = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for doc in _crd_docs(path):
            if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                schema = (v.get("schema") or {}).get("openAPIV3Schema") or {}
                crd = CrdVersion(
                    group=spec["group"], kind=spec["names"]["kind"], plural=spec["names"]["plural"],
                    version=v["name"], schema=schema, namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                )
                out[(f"{crd.group}/{crd.version}", crd.kind)] = crd
    return out


class CrdValidator:
    """Validates objects of the kinds whose CRDs lie in `crd_dir`."""

    def __init__(self, crd_dir: Path | None = None):
        crd_dir = crd_dir or find_crd_dir()
        if crd_dir is None:
            raise FileNotFoundError("no CRD folder: set ARMED_SHARED_CRDS or provide ../shared/crds")
        self.crd_dir = Path(crd_dir)
        self.crds = _load_crds(str(self.crd_dir.resolve()))
        self._validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}

    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self.crds

    def crd(self, api_version: str, kind: str) -> CrdVersion:
        return self.crds[(api_version, kind)]

    def by_plural(self, group: str, version: str, plural: str) -> CrdVersion | None:
        return next(
            (c for c in self.crds.values() if c.group == group and c.version == version and c.plural == plural), None
        )

    def _validator(self, key: tuple[str, str]) -> jsonschema.protocols.Validator:
        if key not in self._validators:
            schema = strict_schema(self.crds[key].schema)
            # apiVersion/kind/metadata are checked by the server itself, not by the CRD schema.
            schema.setdefault("properties", {}).update(
                {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
            )
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
            self._validators[key] = cls(schema)
        return self._validators[key]

    def normalise(self, obj: dict[str, Any]) -> dict[str, Any]:
        """What the server stores: nulls dropped, defaults applied."""
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        return apply_defaults(drop_nulls(obj), self.crds[key].schema)

    def errors(self, obj: dict[str, Any]) -> list[str]:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        if key not in self.crds:
            return [f"no CRD for apiVersion {key[0]!r} kind {key[1]!r} in {self.crd_dir}"]
        errs = []
        meta = obj.get("metadata") or {}
        if not meta.get("name") and not meta.get("generateName"):
            errs.append("metadata.name: Required value")
        for e in sorted(self._validator(key).iter_errors(self.normalise(obj)), key=lambda e: list(e.absolute_path)):
            path = ".".join(str(p) for p in e.absolute_path) or "<root>"
            errs.append(f"{path}: {e.message[:300]}")
        return errs

    def validate(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Raise CrdValidationError if the server would reject `obj`; return the normalised object."""
        errs = self.errors(obj)
        if errs:
            raise CrdValidationError(obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?"), errs)
        return self.normalise(obj)
