"""Fuzz suite, fast part: the cases of `python -m ops.fuzz`, in-process, against the real armed HTTP stack.

The stack is tests/security/serve_inprocess.py: the real Gateway, JudgeDeployment (real Pipeline and knowledge
base) and model deployments with zero-work engines; only Ray's transport is replaced. Every hand-written seed
family runs against every route of every OpenAPI document, one test per (route, family), plus schemathesis'
generated cases, and then a normal judgment must still succeed. A route passes when nothing it answers is
>= 500 (503 only where a test takes a role down on purpose), no exception escapes the app, and each case with an
expectation ("refused": a 4xx) meets it.

Failing today, for the bugs of issue 11 that other branches fix: marked xfail(strict=True) with the bug's name in
KNOWN, so that each fix turns its entries into XPASS (a failure under strict) and they are deleted with the fix.
The long run against a live stack, with the report, is `python -m ops.fuzz` (benchmarks/security/README.md).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ops.fuzz import cases as C
from ops.fuzz import runner as R
from tests.security.serve_inprocess import InProcessStack, documents
from tests.serve.conftest import serve_test_profile, write_profile

pytest.importorskip("schemathesis")

# Cases are built when tests are collected, so the profile and the canary's path exist before any fixture: one
# fixed directory per user, rewritten by each run.
PROFILE_DIR = Path(tempfile.gettempdir()) / f"armed-fuzz-test-{os.getuid()}"
PROFILE_DIR.mkdir(exist_ok=True)
PROFILE = write_profile(PROFILE_DIR, serve_test_profile("fuzz-inprocess"))
CANARY = PROFILE_DIR / "canary.png"  # a readable PNG on the server's host: HTTP input must never get it read
# The 30 s: CI shares two cores with other jobs, and a tighter bound here would measure them.
OPTS = R.Options(concurrency=1, timeout_s=60, slow_s=30, shrink_budget=0, seed=0)
GENERATED_PER_OP = 6


def _seed_groups() -> dict[tuple[str, str], list[C.FuzzCase]]:
    ctx = C.SeedContext(served_roles=set(load_roles()), local_paths={"canary_png": str(CANARY)},
                        big_bodies=True)
    groups: dict[tuple[str, str], list[C.FuzzCase]] = defaultdict(list)
    for case in C.seed_cases(documents(PROFILE), ctx):
        if case.chunked or (case.body is not None and len(case.body) > 1_000_000 and case.family != "oversize"):
            # one 20 MB chunked body per route is enough; the 12 MB lists stay for the live run
            if not (case.chunked and case.route.startswith("POST /v1/")):
                continue
        groups[(case.route, case.family)].append(case)
    return dict(groups)


def load_roles() -> list[str]:
    from armed.serving.profiles import load_profile

    return load_profile(PROFILE).deployed_roles()


GROUPS = _seed_groups()

# (route, family) -> the bug that makes it fail today (found by this suite on main at 651dcca).
SURROGATES = "surrogates: a lone surrogate (\\ud800) reaches UTF-8 encoding (hashes, engines, the JSON of a 422 or " \
             "a judgment): 500 or an exception"
LOCAL_FILES = "judge-reads-local-files: an image given as a path in HTTP input is opened (the canary PNG is judged)"
BOMB = "bomb-png-500: DecompressionBombError escapes load_image_bytes"
UNDECODED = "images-not-decoded: OCR and chat image parts take empty, data:, non-image and bomb payloads to the engine"
CHAT_PARAMS = "chat-params-ignored: n, temperature, top_p accepted and ignored; image_url without url accepted"
CHUNKED = "chunked-body-limit: the 16 MB body limit checks only Content-Length; a 20 MB chunked body is parsed"
NULL_URL = "image-url-null-500: image_url.url = null raises AttributeError in decode_image"
_CHAT = ("POST /v1/chat/completions", "POST /models/llm/v1/chat/completions", "POST /models/vl/v1/chat/completions")
# Empty since the issue-11 fixes landed (images, edge, stalls, auth, batch): a new entry needs a bug name and the
# fix that will delete it.
KNOWN: dict[tuple[str, str], str] = {}


def known_bug(route: str, family: str) -> str | None:
    return KNOWN.get((route, family))


def _params() -> Iterator[Any]:
    for (route, family) in sorted(GROUPS):
        bug = known_bug(route, family)
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        yield pytest.param(route, family, marks=marks, id=f"{route}::{family}")


@pytest.fixture(scope="module")
def stack() -> Iterator[InProcessStack]:
    from ops.fuzz.values import png

    CANARY.write_bytes(png(64, 64, (10, 200, 30)))
    s = InProcessStack(PROFILE)
    with s.patched():
        yield s


@pytest.fixture(scope="module")
async def client(stack: InProcessStack) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(stack, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://armed.test", timeout=30) as c:
        yield c


def problems(records: list[R.Record], allow_503: bool = False) -> list[str]:
    out = []
    for r in records:
        if r.is_error() and not (allow_503 and r.status == 503):
            out.append(f"{r.case_id}: {r.status or r.outcome} {r.hint} {r.error[:200]}")
        elif r.is_slow(OPTS.slow_s):
            out.append(f"{r.case_id}: slow, {r.seconds:.1f}s")
        elif r.violation:
            out.append(f"{r.case_id}: {r.violation}")
    return out


async def _send_all(client: httpx.AsyncClient, cases: list[C.FuzzCase]) -> list[R.Record]:
    return [await R.send(client, c, i, OPTS) for i, c in enumerate(cases)]


def test_every_route_of_every_document_has_seeds() -> None:
    labels = {op.label for api in documents(PROFILE) for op in api.operations()}
    assert "POST /v1/judge" in labels and "POST /models/ocr/v1/ocr" in labels
    covered = {route for route, _ in GROUPS}
    assert labels <= covered
    for label in labels:
        if label.startswith("POST"):
            fams = {f for (r, f) in GROUPS if r == label}
            assert {"lone_surrogate", "wrong_type", "missing_field", "malformed_body", "content_type",
                    "wrong_method"} <= fams, label


@pytest.mark.parametrize(("route", "family"), list(_params()))
async def test_seed_family(client: httpx.AsyncClient, route: str, family: str) -> None:
    records = await _send_all(client, GROUPS[(route, family)])
    bad = problems(records)
    assert not bad, f"{len(bad)} of {len(records)} cases:\n" + "\n".join(bad[:20])


async def test_generated_cases(client: httpx.AsyncClient) -> None:
    """schemathesis' schema-valid and schema-violating cases for every operation (fixed seed)."""
    gen = await asyncio.to_thread(C.generated_cases, documents(PROFILE), GENERATED_PER_OP, 0, set(load_roles()))
    assert len({c.route for c in gen}) == sum(len(a.operations()) for a in documents(PROFILE))
    records = await _send_all(client, gen)
    bad = problems(records)
    assert not bad, f"{len(bad)} of {len(records)} cases:\n" + "\n".join(bad[:20])


async def test_a_role_down_is_503_not_500(client: httpx.AsyncClient, stack: InProcessStack) -> None:
    """The fakes' deliberate 503: a required role with no replica makes judgments 503 with Retry-After."""
    stack.set_down({"llm"})
    try:
        cases = [c for c in GROUPS[("POST /v1/judge", "valid")] + GROUPS[("POST /v1/chat/completions", "valid")]
                 if "armed-vl" not in c.id]
        records = await _send_all(client, cases)
        assert [r.status for r in records] == [503] * len(cases)
        assert not problems(records, allow_503=True)
    finally:
        stack.set_down(set())


async def test_still_judging_afterwards(client: httpx.AsyncClient) -> None:
    live = await R.liveness(client, OPTS, attempts=1, pause_s=0)
    assert live["ok"], live


# --- the instrument itself: it must find what is planted ---------------------------------------------------------


class Pair(BaseModel):
    query: str
    product: dict[str, Any] | str


class Batch(BaseModel):
    pairs: list[Pair]


def _planted_app() -> FastAPI:
    """A small judge-shaped app with planted bugs: a 500 for long queries, a slow answer for an empty one, a 500
    inside a 200 batch, and a file-existence oracle on image paths."""
    app = FastAPI()

    def judge(p: Pair) -> tuple[int, dict[str, Any]]:
        if len(p.query) > 1000:
            raise ValueError("planted: query too long for the planted judge")
        images = p.product.get("images", []) if isinstance(p.product, dict) else []
        for img in images:
            if isinstance(img, str) and img.startswith("/"):
                reason = "not an image" if os.path.exists(img) else "cannot be read: no such file"
                return 400, {"error": {"message": f"image {img}: {reason}"}}
        if "\x00" in p.query:
            return 500, {"error": {"message": "KeyError: planted in a pair"}}
        return 200, {"level": "highly_relevant"}

    @app.post("/v1/judge")
    async def one(p: Pair) -> JSONResponse:
        if p.query == "":
            await asyncio.sleep(0.3)
        status, body = judge(p)
        return JSONResponse(body, status_code=status)

    @app.post("/v1/judge/batch")
    async def batch(b: Batch) -> dict[str, Any]:
        results = []
        for i, p in enumerate(b.pairs):
            status, body = judge(p) if len(p.query) <= 1000 else (400, {"error": {"message": "too long"}})
            results.append({"index": i, "status": status, **body})
        return {"results": results}

    return app


async def test_the_fuzzer_finds_shrinks_and_reports_planted_bugs(tmp_path: Path) -> None:
    from ops.fuzz.report import ReportWriter

    app = _planted_app()
    apis = [C.Api("", app.openapi())]
    cases = C.plan(apis, C.SeedContext(served_roles=set(), big_bodies=False), max_requests=2000, seed=1,
                   generated_per_op=3)
    assert any(c.family == "generated+" for c in cases) and any(c.family == "generated-" for c in cases)
    opts = R.Options(concurrency=2, timeout_s=5, slow_s=0.2, shrink_budget=40, seed=1, api_key="sekret-key-123")
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://planted.test") as c:
        result = await R.run(c, cases, opts)
    report = ReportWriter(tmp_path, "http://planted.test", opts, {}).write(result)

    assert report["gate"]["pass"] is False and report["liveness"]["after"]["ok"]
    by_status = {(f["route"], f["status"]): f for f in report["failures"]}
    long_query = next(f for f in report["failures"] if f["route"] == "POST /v1/judge" and f["status"] == "500"
                      and "huge_text" in f["families"])
    shrunk = next(c for c in result.minimal.values() if c.id == long_query["minimal_case"])
    assert shrunk.id.endswith("|shrunk") and 1000 < len(shrunk.json_body["query"]) < 2100
    assert ("POST /v1/judge/batch", "200 with a pair 500") in by_status  # a failed pair inside a 200
    assert any(s["case"].endswith("|empty_text|query|0") for s in report["slow"])
    assert any(o["field"].startswith("POST /v1/judge|pair|image|product.images[0]")
               for o in report["file_existence_oracles"])
    assert (tmp_path / "report.md").read_text().startswith("# Fuzz run") and "**Gate: FAIL**" in (
        tmp_path / "report.md").read_text()
    assert (tmp_path / long_query["reproducer"]["file"]).is_file()
    for f in tmp_path.rglob("*"):  # the key is sent, never written
        assert not f.is_file() or b"sekret-key-123" not in f.read_bytes(), f


def test_generation_is_deterministic() -> None:
    apis = documents(PROFILE)[:1]
    a = [(c.id, c.body) for c in C.generated_cases(apis, 3, 7, set(load_roles()))]
    b = [(c.id, c.body) for c in C.generated_cases(apis, 3, 7, set(load_roles()))]
    assert a == b and len(a) >= 3 * len(apis[0].operations())


def test_server_tracebacks_are_found_by_request_id(tmp_path: Path) -> None:
    """The local-stack mode names each failure's cause from the replicas' logs: the earliest failure wins."""
    from ops.fuzz.raylogs import short, tracebacks

    serve_dir = tmp_path / "serve"
    serve_dir.mkdir()
    (serve_dir / "replica_judge_Gateway_abc.log").write_text(
        "ERROR 2026-11-28 10:40:51,369 judge_Gateway abc fuzz-0-00088 -- Request failed.\n"
        "Traceback (most recent call last):\n"
        '  File "/x/site-packages/ray/serve/replica.py", line 1, in f\n'
        "ray.exceptions.RayTaskError(UnicodeEncodeError): ray::student.handle_request()\n"
        "INFO 2026-11-28 10:40:51,396 judge_Gateway abc fuzz-0-00088 -- POST /v1/judge 500 882.9ms\n")
    (serve_dir / "replica_student_student_xyz.log").write_text(
        "INFO 2026-11-28 10:40:51,000 student_student xyz fuzz-0-00087 -- CALL ok\n"
        "ERROR 2026-11-28 10:40:51,064 student_student xyz fuzz-0-00088 -- Request failed.\n"
        "Traceback (most recent call last):\n"
        '  File "/work/wt/armed/engines/shipped.py", line 50, in encode_sync\n'
        "    ids = tok.encode(text)\n"
        "UnicodeEncodeError: 'utf-8' codec can't encode character '\\ud800' in position 0\n"
        "INFO 2026-11-28 10:40:51,076 student_student xyz fuzz-0-00088 -- CALL ERROR 41.5ms\n")
    (tmp_path / "worker-1.err").write_text(  # a failure the judge catches itself and logs through structlog
        "2026-11-28T10:40:52.000001Z [error    ] judge_failed                   request_id=fuzz-0-00090-1\n"
        "Traceback (most recent call last):\n"
        '  File "/work/wt/armed/domain.py", line 126, in content_hash\n'
        "UnicodeEncodeError: 'utf-8' codec can't encode character '\\udc00' in position 1\n"
        "INFO 2026-11-28 10:40:52,100 judge_Judge u fuzz-0-00090 -- CALL judge_batch OK 15.3ms\n")
    found = tracebacks(tmp_path, ["fuzz-0-00088", "fuzz-0-00087", "fuzz-0-00090"])
    assert sorted(found) == ["fuzz-0-00088", "fuzz-0-00090"]
    assert short(found["fuzz-0-00090"]) == "judge_failed: UnicodeEncodeError at armed/domain.py:126 in content_hash"
    assert found["fuzz-0-00088"].startswith("student_student: UnicodeEncodeError: 'utf-8'")
    assert short(found["fuzz-0-00088"]) == ("student_student: UnicodeEncodeError at "
                                           "armed/engines/shipped.py:50 in encode_sync")
