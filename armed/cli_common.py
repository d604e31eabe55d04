"""What every `armed` subcommand shares: the error a command exits with, and the settings read from the environment.

Below armed/cli.py (which wires the subcommands in) and every subcommand module (armed/eval/cli.py, ...), so a
subcommand never imports the command line that imports it.
"""

from __future__ import annotations

from pydantic import ValidationError

from armed.errors import from_validation_error
from armed.settings import ArmedSettings


class CliError(Exception):
    """What a command reports on stderr before it exits with `code` (2: bad input or settings)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def load_settings() -> ArmedSettings:
    """ArmedSettings from the environment; a bad ARMED_* value is a CliError naming the variable."""
    try:
        return ArmedSettings()
    except ValidationError as exc:
        err = from_validation_error(exc)
        raise CliError(f"setting ARMED_{err.field.replace('.', '__').upper()}: {err.message}") from None
