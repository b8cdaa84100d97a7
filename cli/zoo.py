"""ccnet zoo: the 16 mmseg CCNet configs, their published mIoU, and where checkpoints go."""
from __future__ import annotations

import argparse
import json
import os

from .app import entry_point

DESCRIPTION = ("List the mmseg CCNet model zoo (16 configs): dataset, crop, schedule, published "
               "mIoU, test scale, mode and the checkpoint's file name and cache folder.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["cityscapes", "ade20k", "voc"],
                        help="only this dataset's configs")
    parser.add_argument("--json", action="store_true", help="print JSON (with URLs) instead")


def _table(rows) -> str:
    header = ("name", "dataset", "crop", "sched", "mIoU", "ms+flip", "test scale", "mode",
              "cached", "file")
    lines = [[r["name"], r["dataset"], r["crop"], r["schedule"], f"{r['miou']:.2f}",
              f"{r['miou_ms_flip']:.2f}", "x".join(map(str, r["test_scale"])), r["mode"],
              "yes" if r["cached"] else "no", r["file"]] for r in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
                     for line in [header, *lines])


def run(args: argparse.Namespace) -> int:
    from ccnet.zoo import BUILTIN, checkpoint_dir, zoo_rows

    folder = checkpoint_dir()
    rows = [r for r in zoo_rows() if args.dataset in (None, r["dataset"])]
    for r in rows:
        r["cached"] = os.path.isfile(os.path.join(folder, r["file"]))
    if args.json:
        print(json.dumps({"checkpoint_dir": folder, "configs": rows,
                          "builtin": sorted(BUILTIN)}, indent=1))
        return 0
    print(_table(rows))
    print("\nmIoU: published single-scale and multi-scale+flip results (percent). Names also "
          "work in mmseg 0.x form (e.g. ccnet_r50-d8_512x1024_80k_cityscapes).")
    print(f"Checkpoints download on first use to {folder}/ ; without internet, download the "
          "file elsewhere (URL: ccnet zoo --json) and put it there under the name in the "
          "'file' column: the zoo name then resolves offline (set $TORCH_HOME to move the "
          "cache).")
    if BUILTIN:
        print(f"Built in (weights shipped with the package): {', '.join(sorted(BUILTIN))}.")
    return 0


main = entry_point("ccnet-zoo", DESCRIPTION, add_arguments, run)
