"""Choosing calibration photos: a folder, a glob pattern or a list file → photo paths.

Dataset folders hold label maps next to the photos (VOC ``SegmentationClass``, ADE20K
``annotations``, ``labels``, ``gtFine``), and label maps are PNGs too.  A label map calibrates
the network on inputs it never sees, so candidates are filtered twice:

- folders named like label folders (``LABEL_FOLDER_PREFIXES``) are not walked;
- a PNG whose header says single-channel (grey) or palette colour type is a label map, not a
  photo (``is_photo``): the test reads 26 bytes, no decoding.

The candidates are shuffled with a seed (``shuffled``) so that ``--num-images`` takes a fair
sample of a large folder instead of its alphabetical head, and the same seed picks the same
files on every machine.
"""
from __future__ import annotations

import glob
import os
from typing import List, Optional, Sequence

import numpy as np

from ccnet.errors import CCNetError
from ccnet.files import require_file
from ccnet.images import is_image_file

LABEL_FOLDER_PREFIXES = ("label", "annotation", "gt", "ground_truth", "groundtruth", "mask",
                         "segmentationclass", "segmentationobject")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_PHOTO_COLOUR_TYPES = (2, 6)  # truecolour, truecolour + alpha


def is_label_folder(name: str) -> bool:
    return name.lower().startswith(LABEL_FOLDER_PREFIXES)


def is_photo(path: str) -> bool:
    """False for a PNG whose IHDR colour type is grey, grey+alpha or palette (label maps)."""
    if not path.lower().endswith(".png"):
        return True
    try:
        with open(path, "rb") as f:
            header = f.read(26)
    except OSError:
        return True  # let the reader report it as unreadable
    if len(header) < 26 or not header.startswith(_PNG_SIGNATURE) or header[12:16] != b"IHDR":
        return True
    return header[25] in _PNG_PHOTO_COLOUR_TYPES


def photos_in_folder(folder: str) -> List[str]:
    """Image files under ``folder`` (recursive, sorted), label folders and label PNGs left out."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_label_folder(d))
        found += [os.path.join(root, f) for f in sorted(files) if is_image_file(f)]
    return [p for p in found if is_photo(p)]


def photos_from_glob(pattern: str) -> List[str]:
    """Image files matching a glob pattern (``**`` recursive); label PNGs and files in label
    folders below the pattern's fixed part left out."""
    base = _fixed_prefix(pattern)
    paths = sorted(p for p in glob.glob(pattern, recursive=True)
                   if os.path.isfile(p) and is_image_file(p))
    return [p for p in paths if is_photo(p) and not any(
        is_label_folder(part) for part in os.path.relpath(os.path.dirname(p), base).split(os.sep))]


def _fixed_prefix(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard."""
    parts = []
    for part in pattern.split(os.sep):
        if glob.has_magic(part):
            break
        parts.append(part)
    return os.sep.join(parts) or os.curdir


def photos_from_list(list_file: str) -> List[str]:
    """Paths listed one per line (``#`` comments, blank lines ignored; relative paths are
    relative to the list's folder).  Label PNGs in the list are left out too."""
    require_file(list_file, "calibration image list")
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CCNetError(f"cannot read calibration image list {list_file} ({e}): give a text "
                         "file with one image path per line") from None
    base = os.path.dirname(os.path.abspath(list_file))
    paths = [os.path.join(base, line.strip()) for line in lines
             if line.strip() and not line.lstrip().startswith("#")]
    return [p for p in paths if is_photo(p)]


def candidate_photos(images: Optional[str] = None, image_list: Optional[str] = None) -> List[str]:
    """Calibration candidates from a folder or glob pattern (``images``) or a list file."""
    if images is not None and image_list is not None:
        raise CCNetError("give calibration images either as --images (folder or glob) or as "
                         "--list, not both")
    if image_list is not None:
        paths, source = photos_from_list(image_list), f"list {image_list}"
    elif glob.has_magic(images):
        paths, source = photos_from_glob(images), f"pattern {images!r}"
    elif os.path.isdir(images):
        paths, source = photos_in_folder(images), f"folder {images}"
    elif os.path.exists(images):
        raise CCNetError(f"--images {images} is a file: give a folder, a quoted glob pattern, "
                         "or a list file with --list")
    else:
        raise CCNetError(f"calibration image folder not found: {images}")
    if not paths:
        raise CCNetError(f"no photos (.jpg/.jpeg/.png/.bmp; label maps and label folders are "
                         f"skipped) in {source}: pass representative photos the model will see")
    return paths


def shuffled(paths: Sequence[str], seed: int) -> List[str]:
    """``paths`` in a seeded random order (the same on every machine for the same seed)."""
    order = np.random.default_rng(seed).permutation(len(paths))
    return [paths[i] for i in order]
