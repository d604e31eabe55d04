"""structlog set-up: JSON lines in production, readable console output locally, a request id per judgment.

Every log line written while a judgment runs carries its `request_id` through structlog's context variables,
which also follow the coroutine into the worker threads that `asyncio.to_thread` starts.
"""

from __future__ import annotations

import logging
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field


class LoggingSettings(BaseModel):
    """ArmedSettings' `logging` section (ARMED_LOGGING__*): defined here so that logging imports nothing of armed's
    and any module, the ground floor's included, can log."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["json", "console"] = Field(default="console", description="json in production.")
    level: Literal["debug", "info", "warning", "error"] = Field(default="warning")


_configured = False


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (test runners and daemons swap it after logging is set up)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(settings: LoggingSettings | None = None) -> None:
    """Configure structlog once per process (later calls re-apply the format and level)."""
    global _configured
    settings = settings or LoggingSettings()
    level = getattr(logging, settings.level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Logs go to stderr so that `armed judge --json` keeps stdout for the answer alone.
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


@contextmanager
def bound_request(request_id: str, **extra: str) -> Iterator[None]:
    """Bind the request id (and any extra keys) to every log line inside the block."""
    with structlog.contextvars.bound_contextvars(request_id=request_id, **extra):
        yield
