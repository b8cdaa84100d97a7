"""Output files that are never half-written: write to a temp file beside, then rename."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

from .errors import CCNetError


@contextlib.contextmanager
def atomic_output(path: str, make_dirs: bool = False) -> Iterator[str]:
    """Yield a temp path beside ``path`` (same extension, so cv2/matplotlib pick the format);
    it replaces ``path`` when the block succeeds and is removed when it fails."""
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        os.makedirs(directory, exist_ok=True)
    if not os.path.isdir(directory):
        raise CCNetError(f"cannot write {path}: folder {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.splitext(path)[1])
    except OSError as e:
        raise CCNetError(f"cannot write {path}: {e.strerror}") from e
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write(path: str, data: bytes, make_dirs: bool = False) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_output(path, make_dirs) as tmp, open(tmp, "wb") as f:
        f.write(data)
