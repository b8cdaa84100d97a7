"""User-facing errors: one line that says what is wrong and what to do."""
from __future__ import annotations


class CCNetError(Exception):
    """An error caused by the user's input; CLIs print it as one line and exit non-zero."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
