"""What ``ccnet batch`` segments: a source (folder, glob, text list, image or video file) expanded
into work items, each with the output name its results are written under.

An item is an image (``key`` = its path relative to the source root, without extension) or a
video (``key`` = the folder its frames go to: ``<relative path without extension>/000123``).
Only paths are listed here; nothing is decoded, so the listing of a large archive costs one
directory walk and a few bytes per file.
"""
from __future__ import annotations

import glob
import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

from ccnet.errors import CCNetError
from ccnet.files import is_inside
from ccnet.images import IMAGE_EXTS, is_image_file

# Containers OpenCV's FFmpeg backend decodes; frames come out exactly as cv2.VideoCapture reads
# them, which is what runtime.VideoSegmenter segments.
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
GLOB_CHARS = "*?["


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One input: ``kind`` "image" or "video", its absolute ``path`` and output ``key``."""

    kind: str
    path: str
    key: str


@dataclass
class SourcePlan:
    """The work items of a source, sorted by path."""

    source: str
    items: List[WorkItem]

    @property
    def num_images(self) -> int:
        return sum(item.kind == "image" for item in self.items)

    @property
    def num_videos(self) -> int:
        return sum(item.kind == "video" for item in self.items)


def is_video_file(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTS)


def is_glob(text: str) -> bool:
    return any(c in text for c in GLOB_CHARS)


def _walk(folder: str, exclude: Optional[str]) -> Iterable[str]:
    """Image and video files under ``folder`` (recursive, sorted), never inside ``exclude``."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_inside(os.path.join(root, d), exclude))
        for name in sorted(files):
            if is_image_file(name) or is_video_file(name):
                yield os.path.join(root, name)


def _glob_root(pattern: str) -> str:
    """The folder before the first wildcard: keys of a glob's matches are relative to it."""
    parts = os.path.abspath(pattern).split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if is_glob(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


def _read_list(list_file: str) -> List[str]:
    """Paths listed one per line (blank lines and ``#`` comments ignored); relative paths are
    relative to the list file's folder."""
    try:
        with open(list_file, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise CCNetError(f"{list_file} is neither an image, a video nor a text list of paths "
                         f"(images: {', '.join(IMAGE_EXTS)}; videos: {', '.join(VIDEO_EXTS)})"
                         ) from None
    base = os.path.dirname(os.path.abspath(list_file))
    entries = [line.strip() for line in lines]
    return [os.path.normpath(os.path.join(base, e)) for e in entries if e and not e.startswith("#")]


def _make_items(paths: Sequence[str], root: str) -> List[WorkItem]:
    items = []
    for path in sorted(set(os.path.abspath(p) for p in paths)):
        key = os.path.splitext(os.path.relpath(path, root))[0].replace(os.sep, "/")
        items.append(WorkItem("video" if is_video_file(path) else "image", path, key))
    return items


def _check_keys(items: Sequence[WorkItem]) -> None:
    """Two inputs that would write the same output (``a.jpg`` and ``a.png``) are refused: one
    would silently replace the other's result."""
    counts = Counter(item.key for item in items)
    clashes = [key for key, n in counts.items() if n > 1]
    if clashes:
        same = [os.path.basename(i.path) for i in items if i.key == clashes[0]]
        raise CCNetError(f"{len(clashes)} output name(s) would be written twice, e.g. "
                         f"{clashes[0]} from {' and '.join(same)}: rename or split the inputs")


def expand_source(source: str, exclude: Optional[str] = None) -> SourcePlan:
    """Work items of ``source``: a folder (recursive; images and videos), a glob pattern, a text
    file listing paths, or one image or video file.  Files inside ``exclude`` (the output
    folder) are left out, so results written into the source tree are never inputs.

    Listed paths that do not exist are kept: reading them fails, and the job records that.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        root = os.path.abspath(source)
        paths = list(_walk(root, exclude))
    elif os.path.isfile(source) and (is_image_file(source) or is_video_file(source)):
        root = os.path.dirname(os.path.abspath(source))
        paths = [source]
    elif os.path.isfile(source):
        paths = [p for p in _read_list(source) if not is_inside(p, exclude)]
        root = os.path.commonpath([os.path.dirname(p) for p in paths]) if paths else ""
    elif is_glob(source):
        root = _glob_root(source)
        paths = [p for p in glob.glob(source, recursive=True) if os.path.isfile(p)
                 and (is_image_file(p) or is_video_file(p)) and not is_inside(p, exclude)]
    else:
        raise CCNetError(f"input not found: {source} (give a folder, a glob such as "
                         "'photos/**/*.jpg', a text file listing paths, or an image/video file)")
    items = _make_items(paths, root)
    if not items:
        raise CCNetError(f"no images or videos in {source} (images: {', '.join(IMAGE_EXTS)}; "
                         f"videos: {', '.join(VIDEO_EXTS)})")
    _check_keys(items)
    return SourcePlan(source, items)


def frame_key(video_key: str, index: int) -> str:
    """Output key of frame ``index`` of a video (source frame index, skipped frames count)."""
    return f"{video_key}/{index:06d}"
