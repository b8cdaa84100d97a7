"""Benchmark of the criss-cross attention kernels (plugins/cca_kernels.cu) on a CUDA GPU.

Compares ccnet_cca_forward (through ctypes) with the PyTorch reference op
torch.ops.ccnet.criss_cross_attention (matmul form) and with the memory-traffic floor:
bytes of q, k, v read once + out written once, divided by the device's peak DRAM bandwidth
(name table below, or --peak-bw-gbs), also shown against a measured device copy bandwidth.

    python bench/cca_kernel_bench.py --json out/cca_kernel_bench.json
Shapes N x C x H x W with Cq = C/8: 1x512x128x256, 2x512x97x97, 1x512x64x128; FP32 and FP16.
"""
from __future__ import annotations

import argparse
import statistics
import sys

SHAPES = [(1, 512, 128, 256), (2, 512, 97, 97), (1, 512, 64, 128)]
# Peak DRAM bandwidth in GB/s by device-name substring (first match wins; vendor data sheets).
PEAK_BANDWIDTH_GBS = [
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5 (e.g. "NVIDIA H100 80GB HBM3")
    ("A100-SXM4-80GB", 2039.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10", 600.0),
    ("T4", 320.0),
]


def peak_bandwidth_gbs(device_name: str) -> float | None:
    return next((bw for key, bw in PEAK_BANDWIDTH_GBS if key in device_name), None)


def time_ms(torch, fn, warmup: int, iters: int) -> float:
    """Median time of fn() in milliseconds, measured with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def measured_copy_bandwidth_gbs(torch, warmup: int, iters: int) -> float:
    src = torch.empty(256 * 2**20, dtype=torch.float32, device="cuda")  # 1 GiB
    dst = torch.empty_like(src)
    ms = time_ms(torch, lambda: dst.copy_(src), warmup, iters)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def bench_shape(torch, lib, dtype, code: int, shape, peak, copy_bw, warmup: int, iters: int) -> dict:
    """Kernel vs reference op time for one dtype and N×C×H×W, with the memory-traffic floor."""
    import plugins

    n, c, h, w = shape
    cq = c // 8
    q = torch.randn(n, cq, h, w, device="cuda").mul_(0.35).to(dtype)
    k = torch.randn(n, cq, h, w, device="cuda").mul_(0.35).to(dtype)
    v = torch.randn(n, c, h, w, device="cuda").to(dtype)
    out = torch.empty_like(v)
    ws_bytes = lib.ccnet_cca_workspace_size(n, h, w)
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device="cuda")
    stream = torch.cuda.current_stream().cuda_stream

    def kernel():
        status = lib.ccnet_cca_forward(q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                                       n, cq, c, h, w, code, ws.data_ptr(), ws_bytes, stream)
        if status != 0:
            raise RuntimeError(f"ccnet_cca_forward: {plugins.STATUS_NAMES.get(status, status)}")

    kernel_ms = time_ms(torch, kernel, warmup, iters)
    ref_ms = time_ms(torch, lambda: torch.ops.ccnet.criss_cross_attention(q, k, v), warmup, iters)
    traffic = (2 * q.numel() + 2 * v.numel()) * q.element_size()
    floor_ms = traffic / (peak * 1e9) * 1e3 if peak else None
    copy_floor_ms = traffic / (copy_bw * 1e9) * 1e3
    return {
        "dtype": str(dtype).replace("torch.", ""), "shape_nchw": [n, c, h, w], "cq": cq,
        "kernel_ms": kernel_ms, "reference_ms": ref_ms, "speedup_vs_reference": ref_ms / kernel_ms,
        "traffic_bytes": traffic, "floor_ms_peak": floor_ms,
        "kernel_over_floor": kernel_ms / floor_ms if floor_ms else None,
        "floor_ms_measured_copy": copy_floor_ms,
        "kernel_over_copy_floor": kernel_ms / copy_floor_ms,
    }


def print_table(rows, device: str, peak, copy_bw: float) -> None:
    print(f"device: {device}; peak bandwidth {peak or 'unknown'} GB/s; measured copy {copy_bw:.0f} GB/s")
    header = (f"{'dtype':8} {'N x C x H x W':16} {'kernel ms':>10} {'torch ms':>10} {'speedup':>8} "
              f"{'floor ms':>9} {'x floor':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        shape = "x".join(map(str, r["shape_nchw"]))
        floor = f"{r['floor_ms_peak']:.4f}" if r["floor_ms_peak"] else "n/a"
        ratio = f"{r['kernel_over_floor']:.2f}" if r["kernel_over_floor"] else "n/a"
        print(f"{r['dtype']:8} {shape:16} {r['kernel_ms']:10.4f} {r['reference_ms']:10.4f} "
              f"{r['speedup_vs_reference']:8.1f} {floor:>9} {ratio:>8}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--peak-bw-gbs", type=float, help="peak DRAM bandwidth (GB/s) if the device is not in the table")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: nothing to benchmark (run on a GPU machine, see tests/gpu/run_on_device.sh)")
        return 2
    import ccnet.ops  # noqa: F401  registers torch.ops.ccnet.criss_cross_attention
    import plugins
    from ccnet.files import write_json
    from runtime.machine import library_versions, machine_info

    lib = plugins.load_library()
    device = torch.cuda.get_device_name()
    peak = args.peak_bw_gbs or peak_bandwidth_gbs(device)
    copy_bw = measured_copy_bandwidth_gbs(torch, args.warmup, args.iters)
    rows = [bench_shape(torch, lib, dtype, code, shape, peak, copy_bw, args.warmup, args.iters)
            for dtype, code in ((torch.float32, plugins.DTYPE_FP32), (torch.float16, plugins.DTYPE_FP16))
            for shape in SHAPES]
    print_table(rows, device, peak, copy_bw)
    result = {"device": device, "peak_bandwidth_gbs": peak, "measured_copy_bandwidth_gbs": copy_bw,
              "machine": machine_info(), "versions": library_versions(),
              "warmup": args.warmup, "iters": args.iters, "results": rows}
    if args.json:
        write_json(args.json, result, make_dirs=True)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
