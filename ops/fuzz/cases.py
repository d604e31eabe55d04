"""What the fuzzer sends: one FuzzCase per request, for every operation of every OpenAPI document served.

Two sources, both deterministic for a given seed and set of documents:

1. Seeds: hand-written families over a valid request of each route (the templates below): every string field
   and dict key gets each hostile text, every image field each hostile image, every node a wrong type, every
   key removed, every list blown up; malformed bodies, wrong content types, oversize and chunked bodies, odd
   headers, wrong methods and unknown paths; the chat and batch parameters issue 11 names. Their ids name the
   route, the family, the field and the value, so a reported failure reads as its own reproducer.
2. Generated: schemathesis' positive (schema-valid) and negative (schema-violating) cases for each operation,
   drawn through hypothesis with a fixed seed. Half of the positive ones get a served model name, so they get
   past the 404 for an unknown model and into the model call.

A route without a template (a route added after this file) still gets the generated cases, and the seed families
run over a schema-valid example of it, so "every route" holds without editing this file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from armed.roles import ROLES, roles_for_route
from ops.fuzz import values as V

# --- the case ---------------------------------------------------------------------------------------------------


@dataclass
class FuzzCase:
    """One request. `expect` is a contract beyond "no 5xx": "refused" (must be 4xx), "too_large" (must be 413) or
    "refused_or_n" (4xx, or 200 with exactly `n` choices). `isolate` marks requests that can stall a replica:
    they are sent one at a time after the rest, each with a probe judgment alongside to measure the damage to
    other callers."""

    id: str
    route: str  # the operation it targets, "POST /v1/judge"; "* <prefix>" for unknown paths of an app
    family: str
    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    expect: str | None = None
    isolate: bool = False
    json_body: Any = None  # the object `body` serialises, when it is one (the shrinker edits it)
    recipe: str = ""  # how to rebuild a body too large to save

    def with_json(self, obj: Any) -> FuzzCase:
        return _replace(self, body=dump(obj), json_body=obj)


def _replace(case: FuzzCase, **kw: Any) -> FuzzCase:
    new = copy.copy(case)
    for k, v in kw.items():
        setattr(new, k, v)
    return new


def dump(obj: Any) -> bytes:
    """JSON with every non-ASCII character escaped: lone surrogates travel as "\\ud800", which is valid JSON
    text but not encodable UTF-8 (what an attacker sends; httpx's own json= would refuse to encode it)."""
    return json.dumps(obj, ensure_ascii=True, allow_nan=True).encode()


# --- the documents ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    prefix: str  # the app's route prefix ("" for the gateway at "/")
    method: str  # upper case
    path: str  # as in the app's document
    has_body: bool

    @property
    def full_path(self) -> str:
        return self.prefix + self.path

    @property
    def label(self) -> str:
        return f"{self.method} {self.full_path}"

    @property
    def role(self) -> str | None:
        """The model role of a per-model app (`/models/<role>`), None for the gateway."""
        return self.prefix.removeprefix("/models/") if self.prefix.startswith("/models/") else None


@dataclass
class Api:
    prefix: str
    spec: dict[str, Any]

    def operations(self) -> list[Operation]:
        ops = []
        for path, item in sorted(self.spec.get("paths", {}).items()):
            for method, op in sorted(item.items()):
                if method in ("get", "post", "put", "patch", "delete"):
                    ops.append(Operation(self.prefix, method.upper(), path, "requestBody" in op))
        return ops


def model_name(role: str) -> str:
    return ROLES[role].model_name if role in ROLES else f"armed-{role}"


def route_models(op: Operation, served_roles: set[str]) -> list[str]:
    """Model names that this operation should accept (empty when its body names none): the roles answering its
    route (armed/roles.py; the gateway routes by the `model` field)."""
    roles = roles_for_route(op.path)
    if op.role is not None:
        return [model_name(op.role)] if op.role in roles else []
    return [model_name(r) for r in roles if r in served_roles] or [model_name(r) for r in roles[:1]]


# --- valid templates ---------------------------------------------------------------------------------------------

PNG_B64 = V.b64(V.png())


def judge_pair() -> dict[str, Any]:
    return {"query": "布洛芬", "product": {"id": "fuzz-p1", "name": "布洛芬缓释胶囊 0.3g*20粒",
                                          "images": [PNG_B64, {"data": PNG_B64}], "cpv": {"剂型": "胶囊剂"}}}


def templates(op: Operation, models: list[str]) -> list[tuple[str, Any]]:
    """Valid request bodies of a known route, one per model it serves: (variant name, body)."""
    p = op.path
    if p == "/v1/judge":
        return [("pair", judge_pair())]
    if p == "/v1/judge/batch":
        return [("batch", {"pairs": [judge_pair(), {"query": "维生素C", "product": "维生素C片 100片"}]})]
    out: list[tuple[str, Any]] = []
    for m in models:
        if p == "/v1/embeddings":
            out.append((m, {"model": m, "input": ["布洛芬", "维生素C片"], "encoding_format": "float"}))
        elif p == "/v1/classify":
            out.append((m, {"model": m, "pairs": [["布洛芬", "布洛芬缓释胶囊"]]}))
        elif p == "/v1/ocr":
            out.append((m, {"model": m, "image": PNG_B64}))
        elif p == "/v1/chat/completions":
            if m.endswith("-vl"):
                content: Any = [{"type": "text", "text": "这张图片是药品吗？"},
                                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG_B64}}]
            else:
                content = "布洛芬 与 布洛芬缓释胶囊 相关吗？"
            out.append((m, {"model": m, "messages": [{"role": "system", "content": "回答 yes 或 no"},
                                                     {"role": "user", "content": content}],
                            "guided_choice": ["yes", "no"], "max_tokens": 8}))
    return out


# --- walking JSON ----------------------------------------------------------------------------------------------

Path = tuple[str | int, ...]


def show(path: Path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def nodes(obj: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every node, depth first, the root included."""
    yield path, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from nodes(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from nodes(v, (*path, i))


def set_at(obj: Any, path: Path, value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    node = out
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return out


def delete_at(obj: Any, path: Path) -> Any:
    out = copy.deepcopy(obj)
    node = out
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]
    return out


IMAGE_KEYS = {"image", "images", "image_url", "url", "data", "uri"}


def is_image_field(path: Path) -> bool:
    return any(isinstance(p, str) and p in IMAGE_KEYS for p in path)


# --- seed families -----------------------------------------------------------------------------------------------


@dataclass
class SeedContext:
    served_roles: set[str]
    listener_url: str | None = None
    local_paths: dict[str, str] = field(default_factory=dict)
    big_bodies: bool = True  # the 20 MB / 17 MB bodies (CI may leave them to one route)


WRONG_TYPES: tuple[tuple[str, Any], ...] = (("null", None), ("int", 7), ("bool", True), ("list", []), ("object", {}),
                                            ("string", "x"))
NUMBERS: tuple[tuple[str, Any], ...] = (("neg", -1), ("zero", 0), ("int64_over", 2**63), ("float_max", 1e308),
                                        ("fraction", 0.5))


def _may_stall(image_value_name: str) -> bool:
    """Image values that can block or load a replica for long: sent alone, with a probe alongside."""
    return image_value_name.startswith(("bomb", "local_fifo", "local_sparse"))


def _json_families(op: Operation, variant: str, tpl: Any, ctx: SeedContext) -> Iterator[FuzzCase]:
    base = FuzzCase(id="", route=op.label, family="", method=op.method, path=op.full_path)

    def case(family: str, where: str, what: str, obj: Any, **kw: Any) -> FuzzCase:
        return _replace(base, id=f"{op.label}|{variant}|{family}|{where}|{what}", family=family, **kw).with_json(obj)

    yield case("valid", "body", "template", tpl)
    images = V.image_values(ctx.listener_url, ctx.local_paths)
    for path, value in list(nodes(tpl)):
        where = show(path)
        if isinstance(value, str):
            for family, texts in V.HOSTILE_TEXT.items():
                for i, text in enumerate(texts):
                    yield case(family, where, str(i), set_at(tpl, path, text))
            if is_image_field(path):
                for name, img in images.items():
                    yield case("image", where, name, set_at(tpl, path, img), expect="refused",
                               isolate=_may_stall(name))
                    if path[-1] == "data":  # the same value as {"uri": ...}: the issue's ../../ read
                        yield case("image", show(path[:-1]), "uri_" + name, set_at(tpl, path[:-1], {"uri": img}),
                                   expect="refused", isolate=_may_stall(name))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            for name, num in NUMBERS:
                yield case("number", where, name, set_at(tpl, path, num))
        if path:
            for name, wrong in WRONG_TYPES:
                if type(wrong) is not type(value):
                    yield case("wrong_type", where, name, set_at(tpl, path, wrong))
        if isinstance(value, dict):
            for k in value:
                yield case("missing_field", show((*path, k)), "deleted", delete_at(tpl, (*path, k)))
            yield case("unknown_key", where, "surrogate_key", set_at(tpl, path, {**value, "\ud800": "x"}))
            yield case("unknown_key", where, "extra_field", set_at(tpl, path, {**value, "unexpected_field": 1}))
        if isinstance(value, list) and value:
            one = len(dump(value[0]))
            count = max(2, min(V.HUGE_LIST_LEN, 12_000_000 // max(one, 1)))
            yield case("huge_list", where, str(count), set_at(tpl, path, [value[0]] * count))
            yield case("empty_list", where, "[]", set_at(tpl, path, []))


def _chat_families(op: Operation, variant: str, tpl: dict[str, Any]) -> Iterator[FuzzCase]:
    base = FuzzCase(id="", route=op.label, family="chat_params", method=op.method, path=op.full_path)
    user = tpl["messages"][-1]
    patches: list[tuple[str, dict[str, Any], str | None, bool]] = [
        ("guided_choice_empty_label", {"guided_choice": [""]}, None, False),
        ("guided_choice_empty_among", {"guided_choice": ["", "yes", "no"]}, None, False),
        ("guided_choice_duplicates", {"guided_choice": ["yes", "yes"]}, None, False),
        ("guided_choice_33", {"guided_choice": [f"c{i}" for i in range(33)]}, "refused", False),
        ("guided_choice_1025_chars", {"guided_choice": ["x" * 1025, "no"]}, None, True),
        ("guided_choice_100k_chars", {"guided_choice": ["药" * 100_000, "no"]}, None, True),
        ("n_2", {"n": 2}, "refused_or_n", False),
        ("temperature_-5", {"temperature": -5}, "refused", False),
        ("temperature_1e6", {"temperature": 1e6}, "refused", False),
        ("top_p_7", {"top_p": 7}, "refused", False),
        ("stream_true", {"stream": True}, "refused", False),
        ("max_tokens_0", {"max_tokens": 0}, "refused", False),
        ("max_tokens_-1", {"max_tokens": -1}, "refused", False),
        ("max_tokens_1e9", {"max_tokens": 10**9}, "refused", False),
        ("max_tokens_1_multibyte", {"max_tokens": 1, "guided_choice": None,
                                    "messages": [{"role": "user", "content": "布洛芬布洛芬"}]}, None, False),
        ("logprobs", {"logprobs": True, "top_logprobs": 5}, None, False),
        ("tools", {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, None, False),
        ("response_format", {"response_format": {"type": "json_object"}}, None, False),
        ("messages_empty", {"messages": []}, "refused", False),
        ("messages_33", {"messages": [{"role": "user", "content": "q"}] * 33}, "refused", False),
        ("role_tool", {"messages": [{"role": "tool", "content": "q"}]}, "refused", False),
        ("content_parts_empty", {"messages": [{**user, "content": []}]}, None, False),
        ("image_url_is_string", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": "data:image/png;base64," + PNG_B64}]}]}, "refused", False),
        ("image_url_without_url", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {}}]}]}, "refused", False),
        ("content_part_unknown_type", {"messages": [{"role": "user", "content": [
            {"type": "audio", "audio": "x"}]}]}, "refused", False),
    ]
    for name, patch, expect, isolate in patches:
        body = {k: v for k, v in {**tpl, **patch}.items() if v is not None}
        yield _replace(base, id=f"{op.label}|{variant}|chat_params|body|{name}", expect=expect,
                       isolate=isolate).with_json(body)


def _batch_families(op: Operation, tpl: dict[str, Any]) -> Iterator[FuzzCase]:
    base = FuzzCase(id="", route=op.label, family="batch", method=op.method, path=op.full_path)
    good = tpl["pairs"][1]
    bodies: list[tuple[str, Any, str | None]] = [
        ("pairs_65", {"pairs": [good] * 65}, "refused"),
        ("pair_not_object", {"pairs": [good, 1, "x", None]}, "refused"),
        ("one_bad_row_surrogate", {"pairs": [good, {"query": "\ud800", "product": "p"}, good]}, None),
        ("one_bad_row_image", {"pairs": [good, {"query": "q", "product": {"name": "p", "images": ["data:,"]}}]},
         None),
        ("duplicate_rows", {"pairs": [good, good, good]}, None),
    ]
    for name, body, expect in bodies:
        yield _replace(base, id=f"{op.label}|batch|batch|body|{name}", expect=expect).with_json(body)


def _body_families(op: Operation, tpl: Any, ctx: SeedContext) -> Iterator[FuzzCase]:
    base = FuzzCase(id="", route=op.label, family="", method=op.method, path=op.full_path)
    for name, raw in V.MALFORMED_BODIES.items():
        yield _replace(base, id=f"{op.label}|malformed_body|body|{name}", family="malformed_body", body=raw,
                       recipe=f"ops.fuzz.values.MALFORMED_BODIES[{name!r}]")
    good = dump(tpl)
    for ct in V.WRONG_CONTENT_TYPES:
        body = good
        if "utf-16" in ct:
            body = json.dumps(tpl, ensure_ascii=False).encode("utf-16")
        elif "latin-1" in ct:
            body = json.dumps(tpl, ensure_ascii=False).encode()  # UTF-8 bytes under a latin-1 label
        yield _replace(base, id=f"{op.label}|content_type|header|{ct or 'none'}", family="content_type",
                       body=body, content_type=ct or None)
    if ctx.big_bodies:
        for name, size, chunked in (("20MB_chunked", V.OVERSIZE_BYTES, True),
                                    ("17MB_content_length", 17 * 1024 * 1024, False)):
            body, recipe = _padded(tpl, size)
            yield _replace(base, id=f"{op.label}|oversize|body|{name}", family="oversize", body=body,
                           chunked=chunked, expect="too_large", isolate=True, recipe=recipe)


def _padded(tpl: Any, size: int) -> tuple[bytes, str]:
    """The route's own valid body with its first text field padded so the whole is `size` bytes: only the size
    is wrong, so anything but a 413 means the body was read and parsed."""
    path = next((p for p, v in nodes(tpl) if isinstance(v, str)), None)
    if path is None:
        return V.oversize_json(size), f"ops.fuzz.values.oversize_json({size})"
    mark = "@@armed-fuzz-padding@@"
    shell = dump(set_at(tpl, path, mark))
    n = size - (len(shell) - len(mark))
    return shell.replace(mark.encode(), b"a" * n, 1), f"the route's template with {show(path)} = 'a' * {n}"


def _header_families(op: Operation, tpl: Any) -> Iterator[FuzzCase]:
    base = FuzzCase(id="", route=op.label, family="headers", method=op.method, path=op.full_path,
                    body=dump(tpl) if op.has_body else None, json_body=tpl if op.has_body else None,
                    content_type="application/json" if op.has_body else None)
    for name, headers in (
        ("request_id_10k", {"X-Request-Id": "r" * 10_000}),
        ("request_id_latin1", {"X-Request-Id": "caf\xe9-\xff"}),
        ("request_id_empty", {"X-Request-Id": ""}),
        ("authorization_malformed", {"Authorization": "Bearer"}),
        ("authorization_basic", {"Authorization": "Basic Og=="}),
        ("authorization_huge", {"Authorization": "Bearer " + "k" * 8000}),
        ("accept_html", {"Accept": "text/html"}),
    ):
        yield _replace(base, id=f"{op.label}|headers|header|{name}", headers=headers)


def _method_families(op: Operation, methods_at: dict[str, set[str]]) -> Iterator[FuzzCase]:
    allowed = methods_at.get(op.full_path, set())
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
        if method not in allowed:
            yield FuzzCase(id=f"{op.label}|wrong_method|method|{method}", route=op.label, family="wrong_method",
                           method=method, path=op.full_path, body=b"{}" if method in ("POST", "PUT", "PATCH")
                           else None, expect="refused")


def unknown_path_cases(prefix: str) -> Iterator[FuzzCase]:
    label = f"* {prefix or '/'}"
    for name, path in (
        ("nowhere", "/v1/nowhere"),
        ("trailing_slash", "/v1/judge/"),
        ("double_slash", "/v1//judge"),
        ("nul", "/v1/judge%00"),
        ("bad_percent", "/v1/%ff%fe"),
        ("long_path", "/" + "a" * 8000),
        ("bad_query", "/v1/models?x=%ff&" + "y=1&" * 500),
        ("unknown_app", "/models/no-such-role/v1/embeddings"),
        ("dot_segments", "/models/embedder/../../v1/judge"),
        ("docs", "/docs"),
        ("openapi", "/openapi.json"),
    ):
        yield FuzzCase(id=f"{label}|unknown_path|path|{name}", route=label, family="unknown_path", method="GET",
                       path=prefix + path, content_type=None)


def seed_cases(apis: list[Api], ctx: SeedContext) -> list[FuzzCase]:
    """Every seed family over every operation of every document, in a stable order."""
    out: list[FuzzCase] = []
    methods_at: dict[str, set[str]] = {}
    ops = [op for a in apis for op in a.operations()]
    for op in ops:
        methods_at.setdefault(op.full_path, set()).add(op.method)
    for op in ops:
        tpls = templates(op, route_models(op, ctx.served_roles)) if op.has_body else [("none", None)]
        if op.has_body and not tpls:
            example = schema_example(apis, op)
            tpls = [("schema_example", example)] if example is not None else []
        for variant, tpl in tpls:
            if tpl is None:
                out.append(FuzzCase(id=f"{op.label}|valid|-", route=op.label, family="valid", method=op.method,
                                    path=op.full_path, content_type=None))
                continue
            out.extend(_json_families(op, variant, tpl, ctx))
            if op.path == "/v1/chat/completions":
                out.extend(_chat_families(op, variant, tpl))
            if op.path == "/v1/judge/batch":
                out.extend(_batch_families(op, tpl))
        first = tpls[0][1] if tpls else None
        if op.has_body and first is not None:
            out.extend(_body_families(op, first, ctx))
        out.extend(_header_families(op, first))
        out.extend(_method_families(op, methods_at))
    for a in apis:
        out.extend(unknown_path_cases(a.prefix))
    seen: set[str] = set()
    unique = []
    for c in out:
        if c.id not in seen:
            seen.add(c.id)
            unique.append(c)
    return unique


# --- generated (schemathesis) ----------------------------------------------------------------------------------


def _schemathesis_ops(api: Api) -> dict[tuple[str, str], Any]:
    import schemathesis

    schema = schemathesis.openapi.from_dict(api.spec)
    out = {}
    for result in schema.get_all_operations():
        op = result.ok()
        out[(op.method.upper(), op.path)] = op
    return out


def _draw(strategy: Any, n: int, seed: int) -> list[Any]:
    """`n` draws of a hypothesis strategy, deterministic for `seed` (no example database, generation only)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    drawn: list[Any] = []

    @hseed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def collect(data: Any) -> None:
        drawn.append(data.draw(strategy))

    try:
        collect()
    except Unsatisfiable:
        pass  # e.g. no way to violate an operation that takes nothing
    return drawn[:n]


def schema_example(apis: list[Api], op: Operation) -> Any:
    """One schema-valid body of an operation (the template of a route this file does not know)."""
    api = next(a for a in apis if a.prefix == op.prefix)
    st_op = _schemathesis_ops(api).get((op.method, op.path))
    if st_op is None:
        return None
    drawn = _draw(st_op.as_strategy(), 1, 0)
    return drawn[0].body if drawn and isinstance(drawn[0].body, (dict, list)) else None


def _stable_int(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("|".join(parts).encode()).digest()[:4], "big")


def generated_cases(apis: list[Api], per_op: int, seed: int, served_roles: set[str]) -> list[FuzzCase]:
    """`per_op` positive and `per_op` negative schemathesis cases for each operation."""
    from schemathesis.core import NotSet
    from schemathesis.generation import GenerationMode

    out: list[FuzzCase] = []
    for api in apis:
        st_ops = _schemathesis_ops(api)
        for op in api.operations():
            st_op = st_ops.get((op.method, op.path))
            if st_op is None:
                continue
            models = route_models(op, served_roles)
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                sign = "+" if mode == GenerationMode.POSITIVE else "-"
                rng = random.Random(_stable_int(str(seed), op.label, sign))
                drawn = _draw(st_op.as_strategy(generation_mode=mode), per_op, seed + _stable_int(op.label, sign))
                for i, c in enumerate(drawn):
                    body_obj = None if isinstance(c.body, NotSet) else c.body
                    if (mode == GenerationMode.POSITIVE and models and isinstance(body_obj, dict)
                            and "model" in body_obj and rng.random() < 0.5):
                        body_obj = {**body_obj, "model": rng.choice(models)}
                    headers = {k: str(v) for k, v in (c.headers or {}).items()}
                    query = "&".join(f"{k}={v}" for k, v in (c.query or {}).items())
                    path = op.prefix + c.formatted_path + (f"?{query}" if query else "")
                    case = FuzzCase(id=f"{op.label}|generated{sign}|{i}", route=op.label, family=f"generated{sign}",
                                    method=op.method, path=path, headers=headers,
                                    content_type=c.media_type if body_obj is not None else None)
                    if isinstance(body_obj, bytes):
                        case.body = body_obj
                    elif body_obj is not None:
                        case = case.with_json(body_obj)
                    out.append(case)
    return out


# --- putting it together --------------------------------------------------------------------------------------------


def interleave(cases: list[FuzzCase]) -> list[FuzzCase]:
    """Round-robin over routes (stable within a route), so a truncated list still covers every route."""
    by_route: dict[str, list[FuzzCase]] = {}
    for c in cases:
        by_route.setdefault(c.route, []).append(c)
    queues = list(by_route.values())
    out: list[FuzzCase] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def plan(apis: list[Api], ctx: SeedContext, max_requests: int, seed: int, min_generated_per_op: int = 5,
         generated_per_op: int | None = None) -> list[FuzzCase]:
    """Seeds first (interleaved by route), then generated cases (enough to fill `max_requests`, at least
    `min_generated_per_op` per operation and mode, or exactly `generated_per_op`), cut to `max_requests`."""
    seeds = interleave(seed_cases(apis, ctx))
    n_ops = sum(len(a.operations()) for a in apis)
    room = max(0, max_requests - len(seeds))
    per_op = generated_per_op or max(min_generated_per_op, math.ceil(room / max(1, 2 * n_ops)))
    gen = interleave(generated_cases(apis, per_op, seed, ctx.served_roles))
    return (seeds + gen)[:max_requests]
