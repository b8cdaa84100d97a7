"""Serving throughput and latency: Triton (``ccnet serve``, HTTP and gRPC) vs calling
``Segmenter`` in-process, for 1 and 4 concurrent clients, measured side by side in one run.

The ``ccnet-demo`` model is exported to ONNX and run by ONNX Runtime on the CPU in both cases.
``ccnet serve`` runs as its own process (as in production; default max batch size 4, one
instance) and the clients are threads of this process using tritonclient, each with its own
connection, sending the decoded photo (``image`` UINT8).  In-process, the same number of
threads call one ``Segmenter.segment``.  The six cases (3 paths × 1/4 clients) run in
``--rounds`` interleaved rounds of ``--requests / rounds`` requests each (spread over the
clients, cycling through real photos, after one warm-up request per client), so a change of
machine load during the run hits every case alike.  Latency is per request as a client sees
it; requests/s is all requests of a case over its summed wall time.

    .venv/bin/python bench/serve_bench.py [--requests 60] [--rounds 3] [--json OUT]
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, List, Tuple

import numpy as np

from runtime.machine import library_versions, machine_info

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

DEFAULT_PHOTOS = os.environ.get("CCNET_SHARED_DATA",
                                os.path.join(os.path.dirname(REPO), "shared", "data"))


def load_photos(folder: str, count: int) -> List[np.ndarray]:
    from ccnet.images import iter_images, load_image

    paths = list(iter_images(folder))[:count]
    if not paths:
        raise SystemExit(f"no images under {folder}: pass --photos DIR")
    return [load_image(p) for p in paths]


Client = Tuple[Callable, Callable]  # (call(image), close())


def run_phase(clients: int, requests: int, make_client: Callable[[], Client],
              photos: List[np.ndarray]) -> dict:
    """``clients`` threads, each with its own ``make_client()`` (tritonclient's HTTP client
    must stay on the thread that made it); returns requests/s and latency percentiles."""
    per_client = requests // clients
    latencies: List[float] = []
    lock, errors = threading.Lock(), []
    start_gate = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        call, close = make_client()
        try:
            call(photos[0])  # warm-up: connection, first-request allocations
            start_gate.wait()
            for i in range(per_client):
                t = time.perf_counter()
                call(photos[(index + i * clients) % len(photos)])
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)
        except Exception as e:  # reported below, never silently dropped
            errors.append(f"{type(e).__name__}: {e}")
            start_gate.abort()
        finally:
            close()  # an open keep-alive connection would hold up the server's shutdown

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    try:
        start_gate.wait()
    except threading.BrokenBarrierError:
        pass
    wall = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - wall
    if errors:
        raise SystemExit(f"{len(errors)} client(s) failed, first: {errors[0]}")
    return {"latencies_ms": latencies, "seconds": wall}


def summarize(path: str, clients: int, phases: List[dict]) -> dict:
    latencies = [ms for phase in phases for ms in phase["latencies_ms"]]
    seconds = sum(phase["seconds"] for phase in phases)
    return {"path": path, "clients": clients, "requests": len(latencies), "seconds": seconds,
            "rps": len(latencies) / seconds, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def in_process(segmenter) -> Callable[[], Client]:
    return lambda: (segmenter.segment, lambda: None)


def triton_client(url: str, protocol: str) -> Callable[[], Client]:
    def make() -> Client:
        if protocol == "http":
            import tritonclient.http as client_module
        else:
            import tritonclient.grpc as client_module
        client = client_module.InferenceServerClient(url)

        def call(image):
            tensor = client_module.InferInput("image", [1, *image.shape], "UINT8")
            tensor.set_data_from_numpy(image[None])
            return client.infer("ccnet", [tensor]).as_numpy("labels")
        return call, client.close
    return make


def free_ports(count: int) -> List[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def serve_logged(model: str, options, log_path: str) -> None:
    """``runtime.serving.serve`` with its output (and Triton's log) in ``log_path``."""
    from runtime.serving import serve

    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    serve(model, options, device="cpu")


def start_server(model: str, log_path: str) -> Tuple[multiprocessing.Process, str, str]:
    """``runtime.serving.serve`` in its own process (SIGTERM stops it gracefully); waits
    (bounded) until the model is ready.  Returns the process and the HTTP and gRPC urls."""
    import tritonclient.http as http

    from runtime.serving import ServeOptions

    http_port, grpc_port, metrics_port = free_ports(3)
    options = ServeOptions(address="127.0.0.1", http_port=http_port, grpc_port=grpc_port,
                           metrics_port=metrics_port, shutdown_timeout=10)
    process = multiprocessing.get_context("spawn").Process(
        target=serve_logged, args=(model, options, log_path))
    process.start()
    url = f"127.0.0.1:{http_port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.is_alive():
        try:
            client = http.InferenceServerClient(url)
            ready = client.is_model_ready("ccnet")
            client.close()
            if ready:
                return process, url, f"127.0.0.1:{grpc_port}"
        except Exception:  # not listening yet
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("ccnet serve did not become ready in 180 s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="requests per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--photos", default=DEFAULT_PHOTOS, help="folder of real photos")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__),
                                                       "serve_bench.json"))
    args = parser.parse_args(argv)

    from ccnet.files import write_json
    from export.to_onnx import export_onnx
    from runtime import Segmenter

    photos = load_photos(args.photos, 8)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "ccnet-demo.onnx")
        export_onnx("ccnet-demo", model, verify=False, log=lambda *a: None)
        server, http_url, grpc_url = start_server(model, os.path.join(tmp, "serve.log"))
        try:
            with Segmenter(model, device="cpu") as segmenter:
                cases = [(path, clients, make) for path, make in (
                    ("in-process Segmenter", in_process(segmenter)),
                    ("Triton HTTP", triton_client(http_url, "http")),
                    ("Triton gRPC", triton_client(grpc_url, "grpc"))) for clients in (1, 4)]
                phases = {(path, clients): [] for path, clients, _ in cases}
                for _ in range(args.rounds):
                    for path, clients, make in cases:
                        phases[path, clients].append(run_phase(
                            clients, args.requests // args.rounds, make, photos))
        finally:
            server.terminate()  # SIGTERM: graceful shutdown
            server.join(60)
    rows = [summarize(path, clients, phases[path, clients]) for path, clients, _ in cases]
    result = {"machine": {**machine_info(), "loadavg_before": load_before,
                          "loadavg_after": os.getloadavg()},
              "versions": library_versions(), "model": "ccnet-demo (ONNX, ONNX Runtime CPU)",
              "photos": [list(p.shape) for p in photos], "rounds": args.rounds, "server": "ccnet serve defaults "
              "(max batch size 4, 1 instance, batch delay 0)",
              "measured_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "rows": rows}
    print(f"{'path':24} {'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['path']:24} {r['clients']:7d} {r['rps']:7.2f} {r['p50_ms']:8.1f} "
              f"{r['p99_ms']:8.1f}")
    print(f"load average before/after: {load_before} / {result['machine']['loadavg_after']}")
    write_json(args.json, result)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
