"""Files the toolkit reads and writes: path checks with one-line errors, and outputs that are
never half-written (written to a temp file beside the target, then renamed into place)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from typing import Iterator, Optional, Sequence

from .errors import CCNetError


# ----------------------------------------------------------------------------- checks
def require_file(path: str, what: str = "file") -> str:
    """``path`` if it is an existing readable regular file, else a one-line error naming
    ``what`` it should be (a FIFO or device is refused: reading one may block forever)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CCNetError(f"{what} {path} is a folder: give the file itself")
    if not os.path.exists(path):
        raise CCNetError(f"{what} not found: {path}")
    if not os.path.isfile(path):
        raise CCNetError(f"{what} {path} is not a regular file (a FIFO, socket or device): "
                         "give a file")
    if not os.access(path, os.R_OK):
        raise CCNetError(f"cannot read {what} {path}: permission denied")
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
    if os.path.exists(path) and not os.path.isfile(path):
        raise CCNetError(f"{what} {path} is not a regular file (a FIFO, socket or device): "
                         "give a file name")
    if extensions and not path.lower().endswith(tuple(e.lower() for e in extensions)):
        raise CCNetError(f"{what} {path} must end in {' or '.join(extensions)}")
    directory = os.path.dirname(os.path.abspath(path))
    if make_dirs:
        _check_creatable(directory, path)
        return path
    if not os.path.isdir(directory):
        raise CCNetError(f"cannot write {path}: folder {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise CCNetError(f"cannot write {path}: folder {directory} is not writable")
    return path


def check_output_folder(path: str, what: str = "output folder") -> str:
    """Refuse an output folder we could not fill, before any work is done: a file in its
    place, or a folder that is not writable or cannot be created."""
    path = os.fspath(path) if path is not None else ""
    if not path:
        raise CCNetError(f"no {what} given")
    if os.path.exists(path) and not os.path.isdir(path):
        raise CCNetError(f"{what} {path} exists and is not a folder: give a folder name")
    parent = os.path.dirname(os.path.abspath(path))
    _check_creatable(parent, path)
    if os.path.isdir(path) and not os.access(path, os.W_OK):
        raise CCNetError(f"cannot write into {what} {path}: permission denied")
    return path


def _check_creatable(directory: str, path: str) -> None:
    """``directory`` exists as a writable folder or can be created (its nearest existing
    ancestor is a writable folder)."""
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CCNetError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise CCNetError(f"cannot write {path}: folder {existing} is not writable")


def is_inside(path: str, folder: Optional[str]) -> bool:
    """Whether ``path`` is ``folder`` or lies under it, links resolved (no folder: False)."""
    if not folder:
        return False
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def file_sha256(path: str) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks (~0.1 s per 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """Yield an empty hidden staging folder beside ``path``; when the block succeeds it
    replaces ``path`` (an earlier output folder is moved aside first and deleted only once the
    new one is in place), and when it fails it is removed.  A reader never sees old and new
    files mixed, nor a half-filled folder under ``path``."""
    path = os.path.abspath(os.fspath(path))
    parent, base = os.path.split(path)
    staging = os.path.join(parent, f".{base}.partial-{secrets.token_hex(6)}")
    try:
        os.makedirs(parent, exist_ok=True)
        os.mkdir(staging)  # mode 0777 minus the umask, like any folder the user makes
    except OSError as e:
        raise CCNetError(f"cannot create folder {path}: {e.strerror}") from None
    try:
        yield staging
        old = os.path.join(parent, f".{base}.old-{secrets.token_hex(6)}")
        if os.path.lexists(path):
            os.replace(path, old)
        os.replace(staging, path)
        if os.path.lexists(old):
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging, ignore_errors=True)


def commit_together(outputs) -> None:
    """Write every ``(path, writer(tmp_path))`` to a temp file first and move them into place
    only when all succeeded, so a failure leaves no output file (neither partial nor half the
    set)."""
    with contextlib.ExitStack() as stack:
        for path, writer in outputs:
            writer(stack.enter_context(atomic_output(path)))
