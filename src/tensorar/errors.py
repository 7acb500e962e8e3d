"""Errors a user can fix (a missing or broken input file, a busy folder, a bad value), and the guard every
stage's `__main__` runs under: such errors end the process with their message and status 1, without a
traceback; anything else (a bug) keeps its traceback."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """Base of the errors a user can fix (an unreadable checkpoint, a busy folder, a bad input)."""


class InputError(UserError, ValueError):
    """An input file or value the stage cannot use; the message names it and says what to do."""


def user_errors() -> tuple[type[BaseException], ...]:
    return (UserError, FileNotFoundError)


def run_stage(main: Callable[[], None]) -> None:
    """`if __name__ == "__main__": run_stage(main)`."""
    try:
        main()
    except user_errors() as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
