"""Files the toolkit reads and writes: path checks with one-line errors, and outputs that are
never half-written (written to a temp file beside the target, then renamed into place)."""
from __future__ import annotations

import contextlib
import json
import os
import secrets
from typing import Iterator, Optional, Sequence

from .errors import CCNetError


# ----------------------------------------------------------------------------- checks
def require_file(path: str, what: str = "file") -> str:
    """``path`` if it is an existing file, else a one-line error naming ``what`` it should be."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CCNetError(f"{what} {path} is a folder: give the file itself")
    if not os.path.isfile(path):
        raise CCNetError(f"{what} not found: {path}")
    return path


def require_folder(path: str, what: str = "folder") -> str:
    """``path`` if it is an existing folder, else a one-line error naming ``what`` it should be."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        hint = " (it is a file)" if os.path.isfile(path) else ""
        raise CCNetError(f"{what} not found: {path}{hint}")
    return path


def check_output_file(path: str, extensions: Optional[Sequence[str]] = None,
                      what: str = "output", make_dirs: bool = False) -> str:
    """Refuse an output file we could not write, before any work is done: no name, a folder,
    a missing or read-only parent folder, or (with ``extensions``) the wrong extension."""
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise CCNetError(f"no {what} path given")
    if os.path.isdir(path):
        raise CCNetError(f"{what} {path} is a folder: give a file name inside it")
    if extensions and not path.lower().endswith(tuple(e.lower() for e in extensions)):
        raise CCNetError(f"{what} {path} must end in {' or '.join(extensions)}")
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        return path
    if not os.path.isdir(directory):
        raise CCNetError(f"cannot write {path}: folder {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise CCNetError(f"cannot write {path}: folder {directory} is not writable")
    return path


# ----------------------------------------------------------------------------- atomic outputs
@contextlib.contextmanager
def atomic_output(path: str, make_dirs: bool = False) -> Iterator[str]:
    """Yield a temp path beside ``path`` (same extension, so cv2/matplotlib pick the format);
    it replaces ``path`` when the block succeeds and is removed when it fails.

    The temp file is created with mode 0666 minus the process umask, like any file ``open``
    creates, so the renamed output is readable by whoever may read the folder's other files.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            raise CCNetError(f"cannot create folder {directory} for {path}: {e.strerror}") from e
    if not os.path.isdir(directory):
        raise CCNetError(f"cannot write {path}: folder {directory} does not exist")
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(6)}{os.path.splitext(path)[1]}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise CCNetError(f"cannot write {path}: {e.strerror}") from e
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


def write_json(path: str, obj, make_dirs: bool = False) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(path, (json.dumps(obj, indent=1) + "\n").encode("utf-8"), make_dirs)


def save_image(tmp_path: str, image, path: Optional[str] = None) -> None:
    """``cv2.imwrite`` to ``tmp_path`` (the extension picks the format); failure is a one-line
    error naming the final ``path``."""
    import cv2

    if not cv2.imwrite(tmp_path, image):
        raise CCNetError(f"cannot write an image as {path or tmp_path}: use a .png file name")


def write_image(path: str, image, make_dirs: bool = False) -> None:
    """Write an image (label map, overlay) with OpenCV, atomically."""
    with atomic_output(path, make_dirs) as tmp:
        save_image(tmp, image, path)


def commit_together(outputs) -> None:
    """Write every ``(path, writer(tmp_path))`` to a temp file first and move them into place
    only when all succeeded, so a failure leaves no output file (neither partial nor half the
    set)."""
    with contextlib.ExitStack() as stack:
        for path, writer in outputs:
            writer(stack.enter_context(atomic_output(path)))
