"""ccnet train: train or fine-tune a CCNet on a folder dataset (mmseg's recipe, small scale)."""
from __future__ import annotations

import argparse

from .app import entry_point
from .args import add_progress, positive_int

DESCRIPTION = "Train or fine-tune a CCNet on a folder dataset (images/ + labels/)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", "--ckpt", dest="model",
                     help="start from these weights (file, zoo or built-in name)")
    src.add_argument("--config", help="start from fresh weights of this zoo/built-in config "
                                      "(e.g. ccnet-demo)")
    parser.add_argument("--data", required=True, help="training folder: images/ + labels/")
    parser.add_argument("--out", required=True, help="output checkpoint (.pth, mmseg layout)")
    parser.add_argument("--iters", type=positive_int, default=1000)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--crop", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--scale-range", type=float, nargs=2, default=(0.5, 1.5),
                        metavar=("MIN", "MAX"), help="random resize ratio around the test scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=positive_int,
                        help="replace the classifiers for N classes")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="torch CPU threads (default 2)")
    parser.add_argument("--val", help="folder dataset to report mIoU on after training")
    add_progress(parser)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ccnet.train import train

    result = train(args.model or args.config, args.data, args.out, iters=args.iters,
                   batch_size=args.batch_size, lr=args.lr, crop=tuple(args.crop),
                   seed=args.seed, scale_range=tuple(args.scale_range),
                   fresh=args.config is not None, num_classes=args.num_classes,
                   num_threads=args.threads, val_dir=args.val, progress=not args.no_progress)
    losses = [h["loss"] for h in result["history"]]
    k = max(1, min(20, len(losses) // 5))
    print(f"trained {args.iters} iterations in {result['wall_time_s']:.0f} s: loss "
          f"{np.mean(losses[:k]):.3f} -> {np.mean(losses[-k:]):.3f}; saved {args.out}")
    if result["val"] is not None:
        print(f"val mIoU {100 * result['val']['miou']:.2f}% "
              f"(aAcc {100 * result['val']['aacc']:.2f}%)")
    return 0


main = entry_point("ccnet-train", DESCRIPTION, add_arguments, run)
