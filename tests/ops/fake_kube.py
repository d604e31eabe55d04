"""A small fake Kubernetes API server over real HTTP on 127.0.0.1, for testing armed-ops with the real client.

Serves: GET /version; core pods (list with labelSelector, get, create); custom objects under
/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}] (create, get, list, replace, merge/JSON patch, delete).
Like the real server it keeps a resourceVersion per object (stale writes → 409 Conflict), answers `?watch=true`
with JSON lines (the current objects as ADDED events), drops nulls and applies defaults, and validates custom
resources with the CRD validator (invalid → 422 Invalid with the causes).
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from ops.crdvalidate import CrdValidator

# Discovery of the core group (`GET /api/v1`): what helm's `lookup` reads to map a kind to its resource.
CORE_RESOURCES = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
    {"name": plural, "singularName": kind.lower(), "namespaced": True, "kind": kind,
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
    for plural, kind in (("pods", "Pod"), ("secrets", "Secret"), ("services", "Service"), ("configmaps", "ConfigMap"))
]}


def _status(code: int, reason: str, message: str, causes: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                            "reason": reason, "code": code}
    if causes:
        body["details"] = {"causes": [{"message": c} for c in causes]}
    return body


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge_patch(out.get(k), v)
    return out


def _json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if op["op"] == "add":
                    parent.insert(idx, op["value"])
                else:
                    parent[idx] = op["value"]
            else:
                if op["op"] == "replace" and last not in parent:
                    raise KeyError(op["path"])
                parent[last] = op["value"]
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "test":
            value = parent[int(last)] if isinstance(parent, list) else parent[last]
            if value != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        else:
            raise ValueError(f"unsupported op {op['op']}")
    return doc


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    for term in filter(None, (selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k) != v:
                return False
        elif labels.get(term) is None:
            return False
    return True


class FakeKube:
    """The store and the server. `url` once started; seed with `put(obj)`; inspect with `get(...)`."""

    def __init__(self, crds: CrdValidator | None = None):
        self.crds = crds
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}  # (api path prefix, ns, plural, name)
        self.lock = threading.Lock()
        self.rv = itertools.count(1000)
        self.requests: list[tuple[str, str]] = []
        self.server: ThreadingHTTPServer | None = None

    # ---- store --------------------------------------------------------------------------------------------
    @staticmethod
    def _prefix(api_version: str) -> str:
        return "/api/v1" if api_version == "v1" else f"/apis/{api_version}"

    def _admit(self, obj: dict[str, Any], plural: str) -> dict[str, Any]:
        api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        if self.crds is not None and self.crds.knows(api, kind):
            return self.crds.validate(obj)  # raises CrdValidationError → 422
        return obj

    def put(self, obj: dict[str, Any], plural: str | None = None) -> dict[str, Any]:
        plural = plural or obj["kind"].lower() + "s"
        obj = self._admit(copy.deepcopy(obj), plural)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta["resourceVersion"] = str(next(self.rv))
        meta.setdefault("uid", f"uid-{meta['resourceVersion']}")
        meta.setdefault("generation", 1)
        key = (self._prefix(obj["apiVersion"]), meta["namespace"], plural, meta["name"])
        with self.lock:
            self.objects[key] = obj
        return obj

    def get(self, api_version: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        return self.objects.get((self._prefix(api_version), namespace, plural, name))

    # ---- server -------------------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n) or b"null")

            def _route(self) -> tuple[str, str | None, str, str | None, dict[str, list[str]]] | None:
                u = urlparse(self.path)
                q = parse_qs(u.query)
                parts = u.path.strip("/").split("/")
                # api/v1/namespaces/ns/plural[/name] or apis/g/v/namespaces/ns/plural[/name]
                if parts[:2] == ["api", "v1"]:
                    prefix, rest = "/api/v1", parts[2:]
                elif parts[0] == "apis" and len(parts) >= 3:
                    prefix, rest = f"/apis/{parts[1]}/{parts[2]}", parts[3:]
                else:
                    return None
                if len(rest) >= 3 and rest[0] == "namespaces":
                    return prefix, rest[1], rest[2], (rest[3] if len(rest) > 3 else None), q
                return None

            def _handle(self, method: str) -> None:
                fake.requests.append((method, self.path))
                if self.path.startswith("/version"):
                    return self._send(200, {"major": "1", "minor": "32", "gitVersion": "v1.32.0-fake"})
                if urlparse(self.path).path == "/api/v1":
                    return self._send(200, CORE_RESOURCES)
                r = self._route()
                if r is None:
                    return self._send(404, _status(404, "NotFound", f"no route {self.path}"))
                prefix, ns, plural, name, q = r
                key = (prefix, ns, plural, name)
                try:
                    if method == "GET" and name is None:
                        with fake.lock:
                            items = [o for (p, n, pl, _), o in sorted(fake.objects.items())
                                     if p == prefix and n == ns and pl == plural
                                     and _matches(o["metadata"].get("labels") or {}, (q.get("labelSelector")
                                                                                     or [None])[0])]
                        if (q.get("watch") or ["false"])[0] in ("true", "1"):
                            lines = b"".join(json.dumps({"type": "ADDED", "object": o}).encode() + b"\n"
                                             for o in items)
                            return self._send(200, lines, "application/json;stream=watch")
                        kind = (items[0]["kind"] if items else plural.rstrip("s").capitalize()) + "List"
                        return self._send(200, {"kind": kind, "apiVersion": "v1", "items": items,
                                                "metadata": {"resourceVersion": str(next(fake.rv))}})
                    if method == "GET":
                        obj = fake.objects.get(key)
                        return self._send(200, obj) if obj else self._send(
                            404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                    if method == "POST":
                        body = self._body()
                        body.setdefault("metadata", {})["namespace"] = ns
                        body.setdefault("apiVersion", prefix.split("/", 2)[-1])
                        body.setdefault("kind", plural[:-1].capitalize())
                        if (prefix, ns, plural, body["metadata"].get("name")) in fake.objects:
                            return self._send(409, _status(409, "AlreadyExists", "already exists"))
                        return self._send(201, fake.put(body, plural))
                    if method == "DELETE":
                        with fake.lock:
                            obj = fake.objects.pop(key, None)
                        return self._send(200, obj) if obj else self._send(
                            404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                    if method in ("PUT", "PATCH"):
                        current = copy.deepcopy(fake.objects.get(key))
                        if current is None:
                            return self._send(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
                        body = self._body()
                        if method == "PUT":
                            new = body
                        elif "json-patch" in (self.headers.get("Content-Type") or ""):
                            new = _json_patch(current, body)
                        else:
                            new = _merge_patch(current, body)
                        sent_rv = ((body if isinstance(body, dict) else {}).get("metadata") or {}).get(
                            "resourceVersion")
                        if sent_rv and sent_rv != current["metadata"]["resourceVersion"]:
                            return self._send(409, _status(
                                409, "Conflict", f'Operation cannot be fulfilled on {plural} "{name}": the object '
                                                 "has been modified; please apply your changes to the latest version"))
                        new.setdefault("metadata", {})
                        new["metadata"].update({k: current["metadata"][k] for k in ("namespace", "name", "uid")})
                        new["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
                        return self._send(200, fake.put(new, plural))
                except Exception as exc:  # validation and patch errors
                    from ops.crdvalidate import CrdValidationError

                    if isinstance(exc, CrdValidationError):
                        return self._send(422, _status(422, "Invalid", str(exc), exc.errors))
                    return self._send(422, _status(422, "Invalid", f"{type(exc).__name__}: {exc}"))
                return self._send(405, _status(405, "MethodNotAllowed", method))

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def kubeconfig(self, path: str) -> str:
        import yaml

        cfg = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
               "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
               "users": [{"name": "fake", "user": {"token": "fake-token"}}],
               "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "armed"}}]}
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(cfg, f)
        return path


class FakePrometheus:
    """GET /api/v1/query: answers the first rule whose substring is in the query; else an empty vector. A rule's
    answer is a list of (labels, value) or a whole Prometheus API response body (a recorded one, see
    `from_recording`)."""

    def __init__(self, rules: list[tuple[str, list[tuple[dict[str, str], float]] | dict[str, Any]]]):
        self.rules = rules
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                u = urlparse(self.path)
                query = (parse_qs(u.query).get("query") or [""])[0]
                fake.queries.append(query)
                result: Any = []
                for needle, res in fake.rules:
                    if needle in query:
                        result = res
                        break
                body = result if isinstance(result, dict) else {
                    "status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": labels, "value": [1700000000.0, str(v)]} for labels, v in result]}}
                data = json.dumps(body).encode()
                self.send_response(200 if u.path == "/api/v1/query" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @classmethod
    def from_recording(cls, path: str | Path) -> FakePrometheus:
        """Serve a recording: {"responses": [{"match": substring of the query, "query": the query it answered,
        "response": the /api/v1/query body}]}, matched in order."""
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls([(r["match"], r["response"]) for r in doc["responses"]])
