"""Blocking calls off the event loop: dedicated threads, a queue that forgets abandoned calls, and a record of
calls that never came back.

A model replica, the judge and the in-process pipeline each run one asyncio event loop. Anything that blocks
(a torch forward pass, an ONNX session, opening and decoding an image, a controller RPC) must not run on it: one
such call that never returns (a FIFO opened for reading, a wedged CUDA kernel) would stop every other request
and the replica's health check with it.

`BlockingWorker` runs such calls on its own daemon threads, never on asyncio's shared default executor, whose
few threads one stuck call per thread would exhaust for the whole process. Properties the callers rely on:

- serial by default (one thread): models held by transformers, vLLM's offline `LLM` or an ONNX session are not
  safe to call from two threads at once, so `threads=1` makes the engine a serial resource;
- a call whose awaiting task is cancelled (its deadline passed, its client went away) before a thread picked it
  up never runs: the queue does not replay abandoned work after a stall;
- a call that is already running cannot be interrupted (Python cannot stop a thread), so the worker records
  when each running call started: `stalled(after_s)` lists, across the process, every call still running past
  `after_s`. The replicas' health checks fail on it, Serve replaces the replica, and only that frees the thread.
- threads are daemons: a stuck call never keeps the process from exiting.

`run_with_deadline` is the one-liner the request paths use: a call on a worker under a deadline, raising
`BlockingTimeout` (a TimeoutError naming what was slow) when it passes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()  # tells an idle thread of a garbage-collected worker to end
_LIVE: weakref.WeakSet[BlockingWorker] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def clock() -> float:
    """The time that call starts and `stalled` ages are read from (monotonic seconds). One module-level function
    so a test can replace it (monkeypatch) and check wedge detection without waiting or racing a busy machine."""
    return time.monotonic()


class BlockingTimeout(TimeoutError):
    """A blocking call did not finish within its deadline (it may still be running on its thread)."""

    def __init__(self, what: str, timeout_s: float) -> None:
        super().__init__(f"{what} did not finish within {timeout_s:g}s")
        self.what = what
        self.timeout_s = timeout_s

    def __reduce__(self) -> tuple[Any, ...]:  # keep both fields across processes (Ray pickles exceptions)
        return (BlockingTimeout, (self.what, self.timeout_s))


@dataclass(frozen=True)
class Stall:
    """One call still running on a worker's thread."""

    worker: str
    what: str
    seconds: float

    def __str__(self) -> str:
        return f"{self.worker}: {self.what} has run for {self.seconds:.1f}s"


class _State:
    """What the threads share with their worker (kept apart so the threads do not keep the worker alive)."""

    def __init__(self) -> None:
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.running: dict[int, tuple[str, float]] = {}  # thread ident -> (what, monotonic start)
        self.lock = threading.Lock()


def _serve(state: _State) -> None:
    while True:
        job = state.jobs.get()
        if job is _STOP:
            return
        _run_one(state, *job)
        del job  # hold no inputs or results while idle


def _run_one(state: _State, future: concurrent.futures.Future, fn: Callable[..., Any], args: tuple, what: str) -> None:
    if not future.set_running_or_notify_cancel():
        return  # its caller gave up while it waited: never run it
    ident = threading.get_ident()
    with state.lock:
        state.running[ident] = (what, clock())
    try:
        result = fn(*args)
    except BaseException as exc:  # handed to the awaiting caller, whatever it is
        _done(state, ident)
        future.set_exception(exc)
    else:
        _done(state, ident)  # before the caller can see the result: a finished call is never reported stuck
        future.set_result(result)


def _done(state: _State, ident: int) -> None:
    with state.lock:
        state.running.pop(ident, None)


class BlockingWorker:
    """Runs blocking calls on `threads` dedicated daemon threads, in arrival order."""

    _names = itertools.count(1)

    def __init__(self, name: str | None = None, *, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.name = name or f"armed-worker-{next(self._names)}"
        self.threads = threads
        self._state = _State()
        self._started = 0
        self._start_lock = threading.Lock()
        with _LIVE_LOCK:
            _LIVE.add(self)
        # when the worker is collected, its idle threads end (a stuck one stays stuck: nothing can end it)
        weakref.finalize(self, _stop_threads, self._state, threads)

    def _ensure_threads(self) -> None:
        if self._started == self.threads:
            return
        with self._start_lock:
            while self._started < self.threads:
                self._started += 1
                threading.Thread(target=_serve, args=(self._state,), daemon=True,
                                 name=f"{self.name}-{self._started}").start()

    async def run(self, fn: Callable[..., T], *args: object, what: str | None = None) -> T:
        """`fn(*args)` on one of the worker's threads. Cancelling the awaiting task drops the call if it has not
        started; a started call runs to its end (its result is then discarded)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._state.jobs.put((future, fn, args, what or getattr(fn, "__qualname__", "call")))
        self._ensure_threads()
        return await asyncio.wrap_future(future)

    def running(self) -> list[Stall]:
        """Calls running now, with how long each has run."""
        now = clock()
        with self._state.lock:
            items = list(self._state.running.values())
        return [Stall(self.name, what, now - started) for what, started in items]


def _stop_threads(state: _State, threads: int) -> None:
    for _ in range(threads):
        state.jobs.put(_STOP)


def stalled(after_s: float) -> list[Stall]:
    """Every call, on any live worker of this process, that has run longer than `after_s`: longest first.

    Per process on purpose: a Serve replica is one process, so this is "is anything in this replica stuck",
    whichever object (engine, wrapper, reader) owns the stuck worker."""
    with _LIVE_LOCK:
        workers = list(_LIVE)
    found = [s for w in workers for s in w.running() if s.seconds > after_s]
    return sorted(found, key=lambda s: -s.seconds)


async def run_with_deadline(
    worker: BlockingWorker, fn: Callable[..., T], *args: object, timeout_s: float, what: str
) -> T:
    """`fn(*args)` on `worker`, awaited at most `timeout_s`; BlockingTimeout after that (the call, if it had
    started, keeps its thread until it returns: `stalled` reports it)."""
    try:
        return await asyncio.wait_for(worker.run(fn, *args, what=what), timeout_s)
    except TimeoutError:
        raise BlockingTimeout(what, timeout_s) from None


_readers: BlockingWorker | None = None


def readers() -> BlockingWorker:
    """The process's worker for blocking reads on request paths (opening and decoding images): four threads, so
    a few stuck reads leave room for others while the health check reports them."""
    global _readers
    if _readers is None:
        _readers = BlockingWorker("armed-read", threads=4)
    return _readers
