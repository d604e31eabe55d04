"""Errors that the CLI and the HTTP API turn into clear messages (exit code 2, HTTP 4xx)."""

from __future__ import annotations

from pydantic import ValidationError


class InputError(ValueError):
    """Bad input, with the field it concerns. Never a 500: the caller can fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def from_validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    """The first problem of a pydantic ValidationError, with a dotted field path."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
    field = ".".join(p for p in (prefix, loc) if p) or "input"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return InputError(field, msg)


class JudgmentTimeout(TimeoutError):
    """The whole judgment ran past `timeouts.total`."""
