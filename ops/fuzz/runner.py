"""Sends FuzzCases and records what came back: status, latency, the error's gist; shrinks each distinct failure.

Works against any httpx.AsyncClient: a live stack (base URL) or an ASGI app in-process (tests/security), where an
exception that escapes the app reaches this module with its traceback instead of as a bare 500.

Bounded by the number of cases it is given, a wall-clock deadline (no new request starts after it) and a
per-request timeout. Requests that can stall a replica (`FuzzCase.isolate`) go last, one at a time, each with a
probe judgment sent a second later: its latency is the damage one such request does to everybody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from armed.roles import ROLE_NAMES
from ops.fuzz.cases import FuzzCase, dump, nodes

LIVENESS_BODY = {"query": "布洛芬", "product": {"id": "fuzz-liveness", "name": "布洛芬缓释胶囊 0.3g*20粒"}}
_EXC_NAME = re.compile(r"^([A-Z]\w*(?:Error|Exception|Exit|Interrupt|Warning))\b")


@dataclass
class Options:
    concurrency: int = 4
    timeout_s: float = 60.0  # per request; a request still running then is recorded as a timeout
    slow_s: float = 30.0  # the threshold: slower than this is a finding
    max_seconds: float = 1800.0  # no new request starts after this
    seed: int = 0
    api_key: str | None = field(default=None, repr=False)  # sent, never recorded
    shrink_budget: int = 40  # extra requests per distinct failure, to shrink its body
    probe_delay_s: float = 1.0
    fifos: tuple[str, ...] = ()  # FIFOs planted on the server's host: released after each isolated case


@dataclass
class Record:
    index: int
    case_id: str
    route: str
    family: str
    method: str
    path: str
    request_id: str
    status: int | None  # None: no HTTP status (timeout, dropped connection, exception in-process)
    outcome: str  # "response", "timeout", "transport_error", "exception"
    seconds: float
    error: str = ""  # the error message's gist (response body or exception)
    hint: str = ""  # exception type / innermost repo frame, where known
    snippet: str = ""  # start of the response body, for failures and contract violations
    expect: str | None = None
    violation: str = ""  # how the response broke the case's `expect`
    probe: dict[str, Any] | None = None  # isolated cases: the probe judgment sent alongside
    item_status: int | None = None  # /v1/judge/batch: the worst per-pair status inside a 200
    server: str = ""  # the server-side failure, where its logs are at hand (ops.fuzz.raylogs)

    def is_error(self) -> bool:
        return (self.outcome in ("transport_error", "exception") or (self.status or 0) >= 500
                or (self.item_status or 0) >= 500)

    def is_slow(self, slow_s: float) -> bool:
        return self.outcome == "timeout" or self.seconds > slow_s

    def status_class(self) -> str:
        if (self.item_status or 0) >= 500:
            return "5xx"  # a failed pair inside a 200 batch is a failure all the same
        if self.status is not None:
            return f"{self.status // 100}xx"
        return self.outcome


# --- one request ---------------------------------------------------------------------------------------------------


def _header_value(v: str) -> str | bytes:
    try:
        v.encode("ascii")
        return v
    except UnicodeEncodeError:
        try:
            return v.encode("latin-1")
        except UnicodeEncodeError:
            return v.encode("utf-8", "surrogatepass")


def request_headers(case: FuzzCase, request_id: str, api_key: str | None) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-Id": request_id}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    lower = {k.lower(): k for k in headers}
    for k, v in case.headers.items():
        headers.pop(lower.get(k.lower(), k), None)
        headers[k] = _header_value(v)
    return headers


async def _chunks(body: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _gist(resp: httpx.Response) -> tuple[str, str]:
    """(error message, exception-name hint) from a response body, OpenAI-shaped or not."""
    text = resp.text
    msg = text
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        body = json.loads(text)
        err = body.get("error", body.get("detail"))
        msg = err.get("message", json.dumps(err)) if isinstance(err, dict) else str(err)
    msg = msg.strip()[:300]
    m = _EXC_NAME.match(msg)
    return msg, (m.group(1) if m else "")


def _frame_hint(exc: BaseException) -> str:
    """The exception type and the innermost frame in this repository's code (not a library's)."""
    repo = str(Path(__file__).resolve().parents[2])
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(repo)]
    where = f" at {os.path.relpath(frames[-1].filename, repo)}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


def _batch_items(resp: httpx.Response) -> list[dict[str, Any]]:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        items = resp.json().get("results")
        if isinstance(items, list):
            return [i for i in items if isinstance(i, dict)]
    return []


def _check_expect(case: FuzzCase, status: int | None, resp: httpx.Response | None) -> str:
    if case.expect is None or status is None or status >= 500:
        return ""
    if case.expect == "too_large":
        return "" if status == 413 else f"answered {status}; a body over the size limit must be refused with 413"
    if 400 <= status < 500:
        return ""
    if status == 200 and resp is not None and any(400 <= int(i.get("status", 0)) < 500 for i in _batch_items(resp)):
        return ""  # a batch refuses the bad pair, not the whole request
    if case.expect == "refused_or_n" and status == 200 and resp is not None:
        n = (case.json_body or {}).get("n")
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            if len(resp.json().get("choices", [])) == n:
                return ""
        return f"accepted with {status} but did not return n={n} choices"
    return f"accepted with {status}; should be refused (4xx)"


async def send(client: httpx.AsyncClient, case: FuzzCase, index: int, opts: Options) -> Record:
    request_id = f"fuzz-{opts.seed}-{index:05d}"
    headers = request_headers(case, request_id, opts.api_key)
    content: Any = None
    if case.body is not None:
        content = _chunks(case.body) if case.chunked else case.body
    rec = Record(index=index, case_id=case.id, route=case.route, family=case.family, method=case.method,
                 path=case.path[:300], request_id=request_id, status=None, outcome="response", seconds=0.0,
                 expect=case.expect)
    started = time.perf_counter()
    resp = None
    try:
        resp = await asyncio.wait_for(client.request(case.method, case.path, content=content, headers=headers),
                                      opts.timeout_s)
        rec.status = resp.status_code
        if resp.status_code >= 400:
            rec.error, rec.hint = _gist(resp)
        elif resp.status_code == 200 and case.path.split("?")[0].endswith("/judge/batch"):
            items = _batch_items(resp)
            rec.item_status = max((int(i.get("status", 0)) for i in items), default=None)
            if (rec.item_status or 0) >= 500:
                bad = next(i for i in items if int(i.get("status", 0)) >= 500)
                msg = str((bad.get("error") or {}).get("message", ""))[:300]
                rec.error, rec.hint = f"pair {bad.get('index')}: {msg}", (_EXC_NAME.match(msg) or [""])[0]
    except (TimeoutError, httpx.TimeoutException):
        rec.outcome, rec.error = "timeout", f"no response within {opts.timeout_s}s"
    except httpx.TransportError as exc:
        rec.outcome, rec.error, rec.hint = "transport_error", f"{type(exc).__name__}: {exc}"[:300], type(exc).__name__
    except Exception as exc:  # an in-process app raised through the ASGI transport
        rec.outcome, rec.error, rec.hint = "exception", f"{type(exc).__name__}: {exc}"[:300], _frame_hint(exc)
    rec.seconds = time.perf_counter() - started
    rec.violation = _check_expect(case, rec.status, resp)
    if resp is not None and (rec.is_error() or rec.violation):
        rec.snippet = resp.text[:300]
    return rec


# --- liveness --------------------------------------------------------------------------------------------------------


async def liveness(client: httpx.AsyncClient, opts: Options, attempts: int = 3, pause_s: float = 10.0
                   ) -> dict[str, Any]:
    """A normal judgment must come back 200 with a level; retried a few times (a replica may be restarting)."""
    case = FuzzCase(id="liveness", route="POST /v1/judge", family="liveness", method="POST", path="/v1/judge")
    tries = []
    for i in range(attempts):
        headers = request_headers(case, f"fuzz-liveness-{opts.seed}-{i}", opts.api_key)
        started = time.perf_counter()
        status, level, error = None, None, ""
        try:
            resp = await asyncio.wait_for(client.post("/v1/judge", content=dump(LIVENESS_BODY), headers=headers),
                                          opts.timeout_s)
            status = resp.status_code
            if status == 200:
                level = resp.json().get("level")
            else:
                error = _gist(resp)[0]
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
        tries.append({"status": status, "seconds": round(time.perf_counter() - started, 3), "level": level,
                      **({"error": error} if error else {})})
        if status == 200 and level:
            return {"ok": True, "attempts": tries}
        if i + 1 < attempts:
            await asyncio.sleep(pause_s)
    return {"ok": False, "attempts": tries}


# --- shrinking -------------------------------------------------------------------------------------------------------


def client_signature(rec: Record) -> tuple[str, str, str]:
    """What makes two failures the same bug, as far as the client can tell."""
    status = str(rec.status) if rec.status is not None else rec.outcome
    if (rec.item_status or 0) >= 500:
        status = f"200 with a pair {rec.item_status}"
    return rec.route, status, rec.hint or rec.error[:80]


def signature(rec: Record) -> tuple[str, str, str]:
    """The same, refined by the server-side exception and frame where the server's logs gave them."""
    from ops.fuzz.raylogs import short

    route, status, hint = client_signature(rec)
    return route, status, short(rec.server) if rec.server else hint


def simplifications(obj: Any) -> list[Any]:
    """Smaller variants of a JSON value, biggest cuts first."""
    out: list[Any] = []
    for path, node in nodes(obj):
        if isinstance(node, dict):
            for k in node:
                out.append(_without(obj, (*path, k)))
        elif isinstance(node, list) and len(node) > 1:
            out.append(_put(obj, path, node[:1]))
            out.append(_put(obj, path, node[len(node) // 2 :]))
        elif isinstance(node, str) and len(node) > 1:
            out.append(_put(obj, path, node[: len(node) // 2]))
            out.append(_put(obj, path, node[len(node) // 2 :]))
    return out


def _put(obj: Any, path: tuple, value: Any) -> Any:
    from ops.fuzz.cases import set_at

    return set_at(obj, path, value)


def _without(obj: Any, path: tuple) -> Any:
    from ops.fuzz.cases import delete_at

    return delete_at(obj, path)


async def shrink(case: FuzzCase, fails: Callable[[FuzzCase], Awaitable[bool]], budget: int) -> tuple[FuzzCase, int]:
    """Greedy: take the first smaller body that still fails the same way, until none does or the budget is gone.
    Returns the smallest failing case and the requests spent."""
    if case.json_body is None or case.chunked:
        return case, 0
    spent, current, progress = 0, case, True
    while progress and spent < budget:
        progress = False
        for candidate in simplifications(current.json_body):
            if spent >= budget:
                break
            spent += 1
            trial = current.with_json(candidate)
            trial.id = case.id + "|shrunk"
            if await fails(trial):
                current, progress = trial, True
                break
    return current, spent


# --- the run ---------------------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    records: list[Record]
    isolated: list[Record]
    liveness_before: dict[str, Any]
    liveness_after: dict[str, Any]
    minimal: dict[str, FuzzCase]  # case id of the first failure of each distinct cause -> smallest failing case
    cases: dict[str, FuzzCase]  # case id -> case, for the report's reproducers
    shrink_requests: int
    seconds: float
    stopped_early: bool


def release_fifos(paths: tuple[str, ...]) -> None:
    """Open each planted FIFO for writing and close it: a server blocked opening it for reading gets EOF."""
    for p in paths:
        with contextlib.suppress(OSError):
            os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))


async def run(client: httpx.AsyncClient, cases: list[FuzzCase], opts: Options,
              progress: Callable[[str], None] | None = None,
              annotate: Callable[[list[Record]], None] | None = None) -> RunResult:
    """Send every case (isolated ones last), then shrink the first failure of each distinct cause; `annotate` may
    add server-side detail (Record.server) to the records before failures are grouped."""
    started = time.perf_counter()
    deadline = started + opts.max_seconds
    say = progress or (lambda _: None)
    before = await liveness(client, opts, attempts=1, pause_s=0)
    main = [c for c in cases if not c.isolate]
    isolated_cases = [c for c in cases if c.isolate]
    records: list[Record] = []
    sem = asyncio.Semaphore(opts.concurrency)
    stopped = False

    async def one(i: int, c: FuzzCase) -> None:
        nonlocal stopped
        async with sem:
            if time.perf_counter() > deadline:
                stopped = True
                return
            records.append(await send(client, c, i, opts))
            if len(records) % 100 == 0:
                errors = sum(r.is_error() for r in records)
                say(f"{len(records)}/{len(cases)} sent, {errors} errors, {time.perf_counter() - started:.0f}s")

    await asyncio.gather(*(one(i, c) for i, c in enumerate(main)))
    isolated: list[Record] = []
    for j, c in enumerate(isolated_cases):
        if time.perf_counter() > deadline:
            stopped = True
            break
        i = len(main) + j
        task = asyncio.create_task(send(client, c, i, opts))
        await asyncio.sleep(opts.probe_delay_s)
        probe_case = FuzzCase(id="probe", route="POST /v1/judge", family="probe", method="POST",
                              path="/v1/judge").with_json(LIVENESS_BODY)
        probe = await send(client, probe_case, 80_000 + j, opts)
        rec = await task
        release_fifos(opts.fifos)
        rec.probe = {"status": probe.status, "outcome": probe.outcome, "seconds": round(probe.seconds, 3)}
        isolated.append(rec)
        say(f"isolated {c.id}: {rec.status_class()} in {rec.seconds:.1f}s; probe {probe.status_class()} "
            f"in {probe.seconds:.1f}s")
    release_fifos(opts.fifos)
    records.extend(isolated)
    records.sort(key=lambda r: r.index)
    if annotate is not None:
        annotate(records)

    by_id = {c.id: c for c in cases}
    minimal: dict[str, FuzzCase] = {}
    spent_total = 0
    seen: set[tuple[str, str, str]] = set()
    for rec in records:
        if not rec.is_error():
            continue
        sig = signature(rec)
        if sig in seen:
            continue
        seen.add(sig)
        case = by_id[rec.case_id]

        async def fails(trial: FuzzCase, want: tuple[str, str, str] = client_signature(rec)) -> bool:
            r = await send(client, trial, 70_000, opts)
            return r.is_error() and client_signature(r) == want

        small, spent = await shrink(case, fails, opts.shrink_budget) if not case.isolate else (case, 0)
        spent_total += spent
        minimal[rec.case_id] = small
    after = await liveness(client, opts)
    return RunResult(records=records, isolated=isolated, liveness_before=before, liveness_after=after,
                     minimal=minimal, cases=by_id, shrink_requests=spent_total,
                     seconds=time.perf_counter() - started, stopped_early=stopped)


def record_dict(rec: Record) -> dict[str, Any]:
    d = asdict(rec)
    d["seconds"] = round(d["seconds"], 4)
    return {k: v for k, v in d.items() if v not in ("", None)}


# --- discovery -------------------------------------------------------------------------------------------------------


async def discover(client: httpx.AsyncClient, api_key: str | None = None,
                   roles: tuple[str, ...] = ROLE_NAMES,
                   ) -> tuple[list[Any], set[str]]:
    """The OpenAPI documents served (the gateway's and each model app's) and the model roles deployed.

    Serve's proxy lists its route prefixes at /-/routes; where that is not answered, /models/<role> is probed for
    each known role."""
    from ops.fuzz.cases import Api

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    prefixes: list[str] = []
    with contextlib.suppress(Exception):
        r = await client.get("/-/routes", headers=headers)
        if r.status_code == 200 and isinstance(r.json(), dict):
            prefixes = sorted(r.json())
    if not prefixes:
        prefixes = ["/"] + [f"/models/{role}" for role in roles]
    apis: list[Api] = []
    for prefix in prefixes:
        base = prefix.rstrip("/")
        with contextlib.suppress(Exception):
            r = await client.get(f"{base}/openapi.json", headers=headers)
            if r.status_code == 200 and isinstance(r.json().get("paths"), dict):
                apis.append(Api(base, r.json()))
    served = {a.prefix.removeprefix("/models/") for a in apis if a.prefix.startswith("/models/")}
    with contextlib.suppress(Exception):
        r = await client.get("/v1/models", headers=headers)
        for m in r.json().get("data", []):
            served.add(str(m.get("id", "")).removeprefix("armed-"))
    return apis, served
