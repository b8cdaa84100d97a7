"""User-facing errors: one line that says what is wrong and what to do."""
from __future__ import annotations

import functools
import sys


class CCNetError(Exception):
    """An error caused by the user's input; CLIs print it as one line and exit non-zero."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def cli_main(fn):
    """Wrap a CLI ``main`` so a CCNetError becomes ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(argv=None):
        try:
            return fn(argv)
        except CCNetError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130

    return wrapper
