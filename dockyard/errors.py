"""Errors an operator sees. Each names where the fault is, so it can be fixed."""

from __future__ import annotations

from pathlib import Path

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_FAILED = 1       # work was attempted and something failed
EXIT_INVALID = 2      # bad input: nothing was changed
EXIT_LOCKED = 3       # another run holds the lock
EXIT_ENGINE = 4       # the container engine cannot be reached


class DockyardError(Exception):
    """Base error. ``exit_code`` tells the CLI how to leave."""

    exit_code = EXIT_FAILED


class ConfigError(DockyardError):
    """Invalid operator input. Raised before anything is changed on the host."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, path: str | Path | None = None, key: str | None = None):
        self.path = str(path) if path is not None else None
        self.key = key
        self.detail = message
        where = ""
        if self.path:
            where = self.path
            if key:
                where += f": {key}"
            where += ": "
        elif key:
            where = f"{key}: "
        super().__init__(f"{where}{message}")


class EngineError(DockyardError):
    """The container engine answered a call with an error (a conflict, a missing
    object, a failed build). The engine drivers raise nothing else (and
    :class:`EngineUnavailable`): their library's exceptions stop at their boundary."""

    exit_code = EXIT_FAILED


class EngineUnavailable(EngineError):
    """The container engine did not answer: no socket, refused, reset, timed out.
    ``reason`` says why in a few words (``Connection refused``)."""

    exit_code = EXIT_ENGINE

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


class LockedError(DockyardError):
    exit_code = EXIT_LOCKED
