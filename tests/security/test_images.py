"""Images from untrusted input (issue 11): no HTTP input opens a local path or reaches a host off the allow-list.

The file checks use a secret PNG written to tmp (its text read by the real RapidOCR when it is sent as bytes, as
the control) and a Python audit hook that records every `open` of it, so "the server never opened the path" is
observed, not inferred. The fetch checks use real local listeners on 127.0.0.x that count their connections.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import os
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from armed import images
from armed.domain import ImageRef
from armed.engines.base import ModelClients
from armed.errors import InputError
from armed.images import UNREADABLE, ImageError, ImageSettings
from armed.serving.profiles import JudgeCaches
from tests.pipeline.conftest import label_image, make_pipeline

SECRET_LINES = ["机密文件", "口令7421"]

# --- an audit hook that records opens of watched paths (a hook cannot be removed: it is gated by the set) -------

_WATCHED: set[str] = set()
_OPENED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and _WATCHED and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if any(w in path for w in _WATCHED):
            _OPENED.append(path)


sys.addaudithook(_audit)


@pytest.fixture
def watch() -> Iterator[Callable[[str | Path], None]]:
    _OPENED.clear()
    yield lambda p: _WATCHED.add(str(p))
    _WATCHED.clear()


def _png(size: tuple[int, int] = (64, 48), color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """200 million pixels in a few hundred bytes: past Pillow's own decompression-bomb limit."""
    buf = io.BytesIO()
    Image.new("1", (20_000, 10_000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _large_png() -> bytes:
    """36 MP (past armed's 25 MP default, under Pillow's own limit) in a small file."""
    buf = io.BytesIO()
    Image.new("1", (6_000, 6_000)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()



@pytest.fixture(scope="module")
def secret_png() -> bytes:
    return label_image(SECRET_LINES)


@pytest.fixture
def secret_file(tmp_path: Path, secret_png: bytes) -> Path:
    path = tmp_path / "shadow.png"
    path.write_bytes(secret_png)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def ocr() -> Any:
    from armed.engines.shipped import RapidOCRReader

    return RapidOCRReader()


class CountingReader:
    """The real OCR engine, counting its calls (the secret must never reach it from a path)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.model_id, self.calls = engine, engine.model_id, 0

    async def read(self, image: bytes) -> list[str]:
        self.calls += 1
        return await self.engine.read(image)


def _service(pipeline: Any) -> Any:
    from deployments.judge import JudgeService

    return JudgeService(pipeline, JudgeCaches())


async def _judge_http(svc: Any, product: dict[str, Any]) -> dict[str, Any]:
    """What the gateway's /v1/judge does with a body: `_images_to_refs`, then the judge deployment's `judge`."""
    from deployments.judge import _images_to_refs

    return await svc.judge({"query": "布洛芬", "product": _images_to_refs(product)})


def _path_forms(path: Path) -> list[Any]:
    rel = os.path.relpath(path, Path.cwd())
    return [
        str(path),
        {"uri": str(path)},
        f"file://{path}",
        {"uri": f"file://{path}"},
        {"uri": rel},
        {"uri": "../" * 12 + str(path).lstrip("/")},
        {"uri": f"ftp://localhost{path}"},
        {"data": str(path)},
    ]


# --- HTTP input never opens a file -------------------------------------------------------------------------------


async def test_http_input_never_opens_a_path_and_never_leaks_the_secret(kb, ocr, secret_png, secret_file, tmp_path,
                                                                        watch) -> None:
    reader = CountingReader(ocr)
    svc = _service(make_pipeline(kb, ModelClients(ocr=reader)))
    # Control: the same PNG sent as bytes is read, so the OCR would reveal its text if a path were ever opened.
    r = await _judge_http(svc, {"name": "布洛芬缓释胶囊", "images": [base64.b64encode(secret_png).decode()]})
    assert r["status"] == 200, r
    assert any("机密" in t for t in r["body"]["evidence"]["image_text"])
    assert reader.calls == 1

    missing = tmp_path / "missing.png"
    watch(secret_file)
    watch(missing)
    for secret_form, missing_form in zip(_path_forms(secret_file), _path_forms(missing),
                                         strict=True):
        got = []
        for form in (secret_form, missing_form):
            r = await _judge_http(svc, {"name": "布洛芬缓释胶囊", "images": [form]})
            assert r["status"] == 400, (form, r)
            assert "机密" not in str(r) and "7421" not in str(r)
            got.append(r["body"]["error"])
        assert got[0] == got[1], secret_form  # no oracle: an existing secret and a missing file answer alike
        assert got[0]["message"] == UNREADABLE and got[0]["field"].startswith("product.images")
    assert _OPENED == []  # observed: nothing opened either path
    assert reader.calls == 1


async def test_library_pipeline_refuses_paths_too(kb, secret_file, watch) -> None:
    """The library's Pipeline (what the judge deployment runs) refuses a path given as an object, not only HTTP."""
    watch(secret_file)
    with pytest.raises(InputError) as err:
        await make_pipeline(kb).judge("布洛芬", {"name": "布洛芬片", "images": [{"uri": str(secret_file)}]})
    assert err.value.message == UNREADABLE
    assert _OPENED == []


def test_model_routes_take_only_inline_images(secret_file, tmp_path, watch) -> None:
    from deployments import api

    watch(secret_file)
    for value in (str(secret_file), f"file://{secret_file}", str(tmp_path / "missing.png"), "http://127.0.0.1/x.png",
                  "data:,", "", "bm90IGFuIGltYWdl", "data:image/png;base64,", "data:image/png;base64,@@@",
                  "data:,\ud800", "\ud800", "data:image/png;base64,\ud800"):
        with pytest.raises(api.ApiError) as err:
            api.decode_image(value, "image")
        assert err.value.status == 400 and err.value.message == f"image: {UNREADABLE}", value
    assert _OPENED == []
    good = _png()
    assert api.decode_image("data:image/png;base64," + base64.b64encode(good).decode(), "image") == good
    assert api.decode_image(base64.b64encode(good).decode(), "image") == good


# --- limits and bad payloads ---------------------------------------------------------------------------------------


def test_bombs_oversize_and_non_images_are_clear_errors() -> None:
    from deployments import api

    small = ImageSettings(max_bytes=1000)
    with pytest.raises(ImageError, match="larger than 1000 bytes") as err:
        images.decode(b"\x89PNG" + b"0" * 2000, small)
    assert err.value.too_large
    with pytest.raises(ImageError, match="more than"):
        images.decode(_bomb_png())
    with pytest.raises(ImageError, match="6000×6000 pixels; the limit is 25000000"):
        images.decode(_large_png())
    for payload in (b"", b"GIF89a", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", _png()[:60]):
        with pytest.raises(ImageError) as err:  # EPS would run Ghostscript: it is not an allowed format at all
            images.decode(payload)
        assert err.value.message == UNREADABLE
    # at the HTTP edge: 400 / 413 with the reason, before the engine sees it
    for payload, status, needle in ((_bomb_png(), 400, "pixels"), (_large_png(), 400, "pixels")):
        with pytest.raises(api.ApiError) as http_err:
            api.decode_image(base64.b64encode(payload).decode(), "image")
        assert http_err.value.status == status and needle in http_err.value.message
    huge = base64.b64encode(b"\0" * (images.MAX_IMAGE_BYTES + 1)).decode()
    with pytest.raises(api.ApiError) as http_err:
        api.decode_image(huge, "image")
    assert http_err.value.status == 413
    with pytest.raises(ValueError, match="larger than"):
        ImageRef(data=huge)


async def test_judge_bad_payloads_are_400_not_500(kb) -> None:
    svc = _service(make_pipeline(kb))
    for img in ("data:,", "", "bm90IGFuIGltYWdl", base64.b64encode(_bomb_png()).decode(), {"data": "data:,"},
                {"uri": "data:image/png;base64,"}, "data:,\ud800", {"uri": "http://\ud800/x"}, 7, None, ["x"]):
        r = await _judge_http(svc, {"name": "布洛芬片", "images": [img]})
        assert r["status"] == 400, (img if len(str(img)) < 40 else "…", r)
        assert r["body"]["error"]["field"].startswith("product.images")


def test_engine_decode_errors_are_image_errors_across_a_ray_handle() -> None:
    """An OCR / VL replica's ImageError reaches the gateway wrapped by Ray; it still maps to a 400 with the
    original message (not the traceback text Ray's wrapper prints)."""
    from ray.exceptions import RayTaskError

    from armed.engines.transformers_engine import decode_image
    from deployments import api

    with pytest.raises(ImageError) as err:
        decode_image(_png()[:80], "image 0 of message 0 (user)")
    wrapped = RayTaskError("read", "Traceback (most recent call last): ...", err.value).as_instanceof_cause()
    assert isinstance(wrapped, ImageError)
    mapped = api.image_api_error(wrapped, "image")
    assert mapped.status == 400
    assert mapped.message == f"image: image 0 of message 0 (user): {UNREADABLE}"


async def test_ocr_route_maps_an_engine_decode_failure_to_400(ocr) -> None:
    """A truncated PNG passes the edge's header check; the real OCR engine's decode refuses it: 400, not 500."""
    from deployments import api
    from deployments.models import OcrDeployment

    # The route's own code on a stand-in for the replica object (Serve builds the real one), with the real engine.
    dep = types.SimpleNamespace(names=["armed-ocr"], check_model=lambda name: None, read=ocr.read)
    body = api.OcrRequest(image=base64.b64encode(_png((300, 300))[:200]).decode())
    with pytest.raises(api.ApiError) as err:
        await OcrDeployment.func_or_class.http_ocr(dep, body)
    assert err.value.status == 400 and err.value.message == f"image: OCR input image: {UNREADABLE}"


# --- the command line reads local files, safely ---------------------------------------------------------------------


def _with_deadline(fn: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Run fn in a daemon thread: a hang (a FIFO opened for reading waits for a writer that never comes) fails the
    test instead of hanging the suite. A guard, not a timing assert: far past what a busy machine needs."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still blocked after {seconds}s"
    return box


def test_cli_fifo_image_is_refused_at_once(tmp_path, capsys) -> None:
    from armed import cli
    from armed.batch import parse_row

    fifo = tmp_path / "label.png"
    os.mkfifo(fifo)
    box = _with_deadline(lambda: images.read_local_image(str(fifo)))
    assert isinstance(box["error"], ImageError) and str(box["error"]) == str(images.local_unreadable())
    argv = ["judge", "--query", "布洛芬", "--product", "布洛芬片", "--image", str(fifo)]
    box = _with_deadline(lambda: cli.main(argv))
    assert box["value"] == 2
    assert "--image" in capsys.readouterr().err
    row = b'{"id": "f", "query": "q", "product": {"name": "p", "images": ["label.png"]}}'
    box = _with_deadline(lambda: parse_row(row, 1, tmp_path))
    assert isinstance(box["error"], InputError) and box["error"].field == "product.images[0]"


def test_cli_reads_files_into_bytes_with_one_message(tmp_path, secret_png) -> None:
    from armed.batch import parse_row

    (tmp_path / "ok.png").write_bytes(secret_png)
    (tmp_path / "shadow").write_text("root:$6$salt$hash:19000:0:99999:7:::\n")
    (tmp_path / "big.png").write_bytes(b"\0" * 2000)
    (tmp_path / "dir.png").mkdir()
    small = ImageSettings(max_bytes=1000)
    messages = set()
    for name in ("shadow", "missing.png", "big.png", "dir.png"):
        with pytest.raises(ImageError) as err:
            images.read_local_image(name, tmp_path, small)
        messages.add(err.value.message)
    assert messages == {images.local_unreadable(small).message}
    assert images.read_local_image("ok.png", tmp_path) == secret_png
    assert images.read_local_image(f"file://{tmp_path}/ok.png") == secret_png
    _, _, product = parse_row(b'{"query": "q", "product": {"name": "p", "images": ["ok.png", {"uri": "ok.png"}]}}',
                              1, tmp_path)
    assert [base64.b64decode(img["data"]) for img in product["images"]] == [secret_png, secret_png]
    # a benchmark file's image paths are read the same way, relative to the file
    from armed.eval.datasets import load_dataset

    bench = tmp_path / "bench.jsonl"
    bench.write_text('{"query": "q", "product": {"name": "p", "images": ["ok.png"]}, "label": "irrelevant"}\n'
                     '{"query": "q", "product": {"name": "p", "images": ["shadow"]}, "label": "irrelevant"}\n')
    with pytest.raises(InputError) as err:
        load_dataset(f"armed:{bench}")
    assert err.value.field == "line 2.product.images[0]"
    bench.write_text(bench.read_text().splitlines()[0] + "\n")
    assert base64.b64decode(load_dataset(f"armed:{bench}").items[0].product["images"][0]["data"]) == secret_png


# --- fetching from an allow-list -----------------------------------------------------------------------------------


class Listener:
    """A local HTTP server counting the connections it accepts."""

    def __init__(self, host: str = "127.0.0.1", routes: dict[str, Callable[[Any], None]] | None = None) -> None:
        self.connections = 0
        self.paths: list[str] = []
        listener = self
        routes = routes or {}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                listener.paths.append(self.path)
                routes.get(self.path.split("?")[0], lambda h: h.send_error(404))(self)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                listener.connections += 1
                return True

        self.server = Server((host, 0), Handler)
        self.host, self.port = host, self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _send(body: bytes, length: bool = True, delay: float = 0.0) -> Callable[[Any], None]:
    def handler(h: Any) -> None:
        time.sleep(delay)
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        if length:
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
        else:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            for i in range(0, len(body), 4096):
                part = body[i:i + 4096]
                h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            h.wfile.write(b"0\r\n\r\n")

    return handler


def _redirect(to: Callable[[], str]) -> Callable[[Any], None]:
    def handler(h: Any) -> None:
        h.send_response(302)
        h.send_header("Location", to())
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handler


PNG = _png((80, 60), (10, 120, 200))


@pytest.fixture
def listener() -> Iterator[Listener]:
    ls = Listener(routes={"/img.png": _send(PNG), "/big": _send(b"\0" * 50_000, length=False),
                          "/biglen": _send(b"\0" * 50_000), "/slow": _send(PNG, delay=3.0)})
    yield ls
    ls.close()


def _loopback_2_available() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


async def test_urls_are_refused_by_default_and_off_the_list_without_a_connection(listener: Listener) -> None:
    url = listener.url("/img.png")
    for s in (ImageSettings(),  # the default: no allow-list, nothing is fetched
              ImageSettings(fetch_hosts=["images.example.com"], allow_private_networks=True),  # not on the list
              ImageSettings(fetch_hosts=["127.0.0.1"], allow_private_networks=True)):  # on it, but not this port
        with pytest.raises(ImageError) as err:
            await images.load(ImageRef(uri=url), s)
        assert err.value.message == UNREADABLE
    assert listener.connections == 0


async def test_allow_listed_loopback_is_refused_after_dns(listener: Listener) -> None:
    """Allow-listed by name or address, the listener resolves to loopback: refused before any connection."""
    for host in ("127.0.0.1", "localhost"):
        s = ImageSettings(fetch_hosts=[f"{host}:{listener.port}"])
        with pytest.raises(ImageError):
            await images.load(ImageRef(uri=listener.url("/img.png", host)), s)
    assert listener.connections == 0


async def test_the_fetch_path_itself_with_private_networks_allowed(kb, listener: Listener) -> None:
    """allow_private_networks (tests, trusted intranets) proves the fetch works, and that the caps hold."""
    from armed_testing.scripted import ScriptedImageReader

    s = ImageSettings(fetch_hosts=[f"localhost:{listener.port}", f"127.0.0.1:{listener.port}"],
                      allow_private_networks=True, max_bytes=20_000, fetch_timeout_s=1.0)
    assert await images.load(ImageRef(uri=listener.url("/img.png", "localhost")), s) == PNG
    for path in ("/big", "/biglen"):  # chunked past the cap, and a Content-Length past it
        with pytest.raises(ImageError) as err:
            await images.load(ImageRef(uri=listener.url(path)), s)
        assert err.value.too_large
    with pytest.raises(ImageError):  # the 1 s deadline: past it the server would send a good PNG (after 3 s)
        await images.load(ImageRef(uri=listener.url("/slow")), s)
    # end to end: the pipeline fetches once per judgment and the OCR reads the fetched bytes
    before = len(listener.paths)
    reader = ScriptedImageReader(texts={PNG: ["布洛芬缓释胶囊"]})
    pipe = make_pipeline(kb, ModelClients(ocr=reader), images=s.model_dump())
    j = await pipe.judge("布洛芬", {"name": "布洛芬缓释胶囊", "images": [{"uri": listener.url("/img.png")}]})
    assert j.evidence.image_text == ["布洛芬缓释胶囊"]
    assert listener.paths[before:] == ["/img.png"]


async def test_redirects_are_checked_like_the_first_url(listener: Listener) -> None:
    other = Listener(routes={"/img.png": _send(PNG)})
    hop = Listener(routes={"/to-other": _redirect(lambda: other.url("/img.png")),
                           "/to-self": _redirect(lambda: hop.url("/img.png")), "/img.png": _send(PNG)})
    try:
        s = ImageSettings(fetch_hosts=[f"127.0.0.1:{hop.port}"], allow_private_networks=True)
        assert await images.load(ImageRef(uri=hop.url("/to-self")), s) == PNG  # a redirect within the list
        with pytest.raises(ImageError):  # to a port/host off the list: refused, never connected
            await images.load(ImageRef(uri=hop.url("/to-other")), s)
        assert other.connections == 0
        hop_loop = Listener(routes={"/loop": _redirect(lambda: hop_loop.url("/loop"))})
        loop_s = ImageSettings(fetch_hosts=[f"127.0.0.1:{hop_loop.port}"], allow_private_networks=True,
                               max_redirects=2)
        with pytest.raises(ImageError):
            await images.load(ImageRef(uri=hop_loop.url("/loop")), loop_s)
        assert len(hop_loop.paths) == 3  # the first request and two redirects, then it stops
        hop_loop.close()
    finally:
        other.close()
        hop.close()


@pytest.mark.skipif(not _loopback_2_available(), reason="127.0.0.2 is not bindable here")
async def test_redirect_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """An allowed host that redirects to a private address. No public listener exists offline, so the address
    rule is narrowed at its boundary: 127.0.0.1 stands for a public address, 127.0.0.2 stays private."""
    private = Listener(host="127.0.0.2", routes={"/img.png": _send(PNG)})
    public = Listener(routes={"/r": _redirect(lambda: private.url("/img.png"))})
    real = images._is_public
    monkeypatch.setattr(images, "_is_public", lambda ip: str(ip) == "127.0.0.1" or real(ip))
    try:
        s = ImageSettings(fetch_hosts=[f"127.0.0.1:{public.port}", f"127.0.0.2:{private.port}"])
        with pytest.raises(ImageError):
            await images.load(ImageRef(uri=public.url("/r")), s)
        assert public.connections == 1 and private.connections == 0
        # the same private listener asked directly is refused too; the "public" one answers
        with pytest.raises(ImageError):
            await images.load(ImageRef(uri=private.url("/img.png")), s)
        assert private.connections == 0
    finally:
        private.close()
        public.close()


def test_address_rule_and_allow_list() -> None:
    import ipaddress

    for a in ("127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
              "224.0.1.1", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "2002:7f00:1::1", "64:ff9b::7f00:1",
              "2001::1", "255.255.255.255"):
        assert not images._is_public(ipaddress.ip_address(a)), a
    for a in ("8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"):
        assert images._is_public(ipaddress.ip_address(a)), a
    s = ImageSettings(fetch_hosts=["img.example.com", "*.cdn.example.com", "pics.example.org:8443"])
    assert images.host_allowed("IMG.example.com.", 443, "https", s)
    assert images.host_allowed("img.example.com", 80, "http", s)
    assert not images.host_allowed("img.example.com", 8080, "http", s)
    assert images.host_allowed("a.b.cdn.example.com", 443, "https", s)
    assert not images.host_allowed("cdn.example.com", 443, "https", s)
    assert not images.host_allowed("evilcdn.example.com", 443, "https", s)
    assert images.host_allowed("pics.example.org", 8443, "https", s)
    assert not images.host_allowed("pics.example.org", 443, "https", s)
    v6 = ImageSettings(fetch_hosts=["::1", "[2001:db8::1]:8443"])
    assert images.host_allowed("::1", 80, "http", v6) and not images.host_allowed("::1", 1, "http", v6)
    assert images.host_allowed("2001:db8::1", 8443, "https", v6)
    with pytest.raises(ValueError):
        ImageSettings(fetch_hosts=["*"])
    with pytest.raises(ValueError):
        ImageSettings(max_bytes=images.MAX_IMAGE_BYTES + 1)


async def test_urls_with_credentials_or_odd_schemes_are_refused(listener: Listener) -> None:
    s = ImageSettings(fetch_hosts=[f"127.0.0.1:{listener.port}"], allow_private_networks=True)
    for url in (f"http://user:pw@127.0.0.1:{listener.port}/img.png", f"http://127.0.0.1:{listener.port}@evil/x"):
        with pytest.raises(ImageError):
            await images.load(ImageRef(uri=url), s)
    for uri in ("gopher://127.0.0.1/", "file:///etc/passwd", "/etc/passwd", "C:\\x.png", "//127.0.0.1/x"):
        with pytest.raises(ValueError, match="not a readable image"):
            ImageRef(uri=uri)
    assert listener.connections == 0


def test_settings_section_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from armed.settings import ArmedSettings

    monkeypatch.setenv("ARMED_IMAGES__FETCH_HOSTS", '["Img.Example.com."]')
    monkeypatch.setenv("ARMED_IMAGES__MAX_PIXELS", "1000000")
    s = ArmedSettings().images
    assert s.fetch_hosts == ["img.example.com"] and s.max_pixels == 1_000_000 and not s.allow_private_networks
    assert ArmedSettings.model_fields["images"].description


def test_one_resolution_per_judgment(kb, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each image is loaded and decoded once per judgment (it was read three times)."""
    calls: list[int] = []
    real = images.check

    def counting(data: bytes, settings: Any = None) -> bytes:
        calls.append(len(data))
        return real(data, settings)

    monkeypatch.setattr(images, "check", counting)
    pipe = make_pipeline(kb)
    asyncio.run(pipe.judge("布洛芬", {"name": "布洛芬片", "images": [{"data": PNG}, {"data": _png()}]}))
    assert len(calls) == 2
