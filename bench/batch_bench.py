"""ccnet batch throughput: Ray Data with 1 and 2 workers vs the same loop without Ray, one run.

    .venv/bin/python bench/batch_bench.py [--images 32] [--json bench/batch_bench.json]

Model: the built-in ``ccnet-demo`` exported to ONNX (ONNX Runtime CPU, test scale 512×256).
Images: the real photos of the shared data folder and synthetic street scenes
(``ccnet.synthetic.make_scene``), all 256×512, written once to a temp folder.  Every
configuration segments the same images into its own output folder with label PNGs:

    loop, 1 thread / 2 threads   load_image → Segmenter.segment → PNG in one process
    ray, 1 / 2 workers           ``runtime.batch.run_batch`` on a local Ray (2 CPUs), one
                                 ONNX Runtime thread per worker

Reported per configuration: wall time of the whole job (Ray: ``run_batch`` from its call, so
the model probe, actor start-up and model loading count; the Ray start itself is listed apart),
the time until the first label PNG landed, and the steady rate while PNGs were landing (from
their modification times).  All outputs are checked to be identical.
Prints a table and writes JSON with the machine (CPU, load average before/after) and versions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np

from ccnet.files import write_json
from runtime.machine import library_versions, machine_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SIZE = (256, 512)  # (height, width): the demo model's test scale, so no resize cost dominates


def make_images(folder: str, count: int) -> None:
    """Real photos (resized to SIZE) first, then synthetic scenes, ``count`` in all."""
    from ccnet.images import iter_images, load_image
    from ccnet.synthetic import make_scene

    shared = os.environ.get("CCNET_SHARED_DATA", os.path.join(os.path.dirname(REPO), "shared",
                                                              "data"))
    photos = list(iter_images(shared)) if os.path.isdir(shared) else []
    photos = [p for p in photos if "/images/" in p][:count // 2]
    for i, path in enumerate(photos):
        image = cv2.resize(load_image(path), SIZE[::-1], interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(folder, f"photo{i:03d}.jpg"), image)
    for seed in range(count - len(photos)):
        cv2.imwrite(os.path.join(folder, f"scene{seed:03d}.jpg"), make_scene(seed, SIZE)[0])


def plain_loop(model: str, source: str, output: str, threads: int) -> dict:
    """The job without Ray: the same items, processing and output files, one process."""
    from ccnet.images import load_image
    from ccnet.labels import as_png_labels
    from runtime.batch_outputs import OutputLayout
    from runtime.batch_sources import expand_source
    from runtime.segmenter import Segmenter

    start = time.time()
    layout = OutputLayout(output)
    with Segmenter(model, device="cpu", threads=threads) as segmenter:
        for item in expand_source(source).items:
            labels = segmenter.segment(load_image(item.path))
            layout.write(item.key, as_png_labels(labels, segmenter.meta.num_classes))
    return _rates(start, time.time(), output)


def ray_job(model: str, source: str, output: str, workers: int) -> dict:
    from runtime.batch import BatchSettings, run_batch

    start = time.time()
    summary = run_batch(model, source, output,
                        BatchSettings(workers=workers, batch_size=4, progress=False))
    assert summary["failed"] == 0, summary["failures"]
    result = _rates(start, time.time(), output)
    result["ms_per_image"] = summary["ms_per_image"]
    result["images_per_worker"] = sorted(summary["images_per_worker"].values())
    return result


def _rates(start: float, end: float, output: str) -> dict:
    """Whole-job rate, and the rate while label PNGs were landing (their modification times:
    the first one marks the end of start-up — Ray, actors, model loading)."""
    landed = sorted(os.stat(os.path.join(output, name)).st_mtime
                    for name in os.listdir(output) if name.endswith(".png"))
    n = len(landed)
    steady = (n - 1) / (landed[-1] - landed[0]) if n > 1 and landed[-1] > landed[0] else None
    return {"images": n, "wall_s": end - start, "images_per_s": n / (end - start),
            "first_output_s": landed[0] - start, "steady_images_per_s": steady}


def same_outputs(folders: list) -> bool:
    reference = folders[0]
    for name in sorted(os.listdir(reference)):
        if not name.endswith(".png"):
            continue
        first = cv2.imread(os.path.join(reference, name), cv2.IMREAD_UNCHANGED)
        for other in folders[1:]:
            if not np.array_equal(first, cv2.imread(os.path.join(other, name),
                                                    cv2.IMREAD_UNCHANGED)):
                return False
    return True


def run_all(model: str, source: str, tmp: str) -> list:
    import ray

    rows, outputs = [], []
    for threads in (1, 2):
        out = os.path.join(tmp, f"loop{threads}")
        rows.append({"config": f"loop without Ray, {threads} thread(s)",
                     **plain_loop(model, source, out, threads)})
        outputs.append(out)
        print(f"done: {rows[-1]['config']}", file=sys.stderr)
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        for workers in (1, 2):
            out = os.path.join(tmp, f"ray{workers}")
            rows.append({"config": f"ray, {workers} worker(s) x 1 thread",
                         "ray_init_s": ray_start, **ray_job(model, source, out, workers)})
            outputs.append(out)
            print(f"done: {rows[-1]['config']}", file=sys.stderr)
    finally:
        ray.shutdown()
    if not same_outputs(outputs):
        raise SystemExit("outputs differ between configurations")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                       "batch_bench.json"))
    args = parser.parse_args(argv)
    from export.to_onnx import export_onnx

    tmp = tempfile.mkdtemp(prefix="ccnet-batch-bench-")
    try:
        model = os.path.join(tmp, "ccnet_demo.onnx")
        export_onnx("ccnet-demo", model, verify=False, log=lambda *a: None)
        source = os.path.join(tmp, "images")
        os.makedirs(source)
        make_images(source, args.images)
        load_before = os.getloadavg()
        rows = run_all(model, source, tmp)
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"machine": {"cpu": machine_info(), "load_average_before": load_before,
                          "load_average_after": load_after},
              "versions": library_versions(), "model": "ccnet-demo ONNX (fp32), test scale 512x256",
              "images": args.images, "image_size": list(SIZE), "rows": rows,
              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    machine = result["machine"]["cpu"]
    print(f"CPU: {machine['cpu']} ({machine['cpu_count']} cores), load average "
          f"{load_before[0]:.1f} before / {load_after[0]:.1f} after; {args.images} images "
          f"{SIZE[1]}x{SIZE[0]}")
    print(f"{'configuration':36} {'wall s':>7} {'img/s':>7} {'first PNG s':>12} "
          f"{'steady img/s':>13}")
    for r in rows:
        steady = r["steady_images_per_s"]
        print(f"{r['config']:36} {r['wall_s']:7.1f} {r['images_per_s']:7.2f} "
              f"{r['first_output_s']:12.1f} {steady if steady else float('nan'):13.2f}")
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
