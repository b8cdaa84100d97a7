"""Helpers for the serving tests: free loopback ports, a `ccnet serve` subprocess with bounded
waits, and the process tree it leaves (or must not leave) behind."""
from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List

from helpers import REPO

LOOPBACK = "127.0.0.1"


def free_ports(count: int = 3) -> List[int]:
    """``count`` distinct ports the kernel reports free on the loopback address now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((LOOPBACK, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def descendants(pid: int) -> List[int]:
    """Every process below ``pid`` (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        task_dir = f"/proc/{parent}/task"
        try:
            tasks = os.listdir(task_dir)
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"{task_dir}/{task}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _die_with_parent():
    """Ask the kernel to SIGTERM the server if pytest dies, so no server outlives the tests."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ServeProcess:
    """``python -m cli.main serve ...`` on loopback ports, output in ``log_path``."""

    def __init__(self, model: str, log_path: str, *flags: str):
        self.http_port, self.grpc_port, self.metrics_port = free_ports(3)
        self.log_path = log_path
        command = [sys.executable, "-m", "cli.main", "serve", "--model", model,
                   "--address", LOOPBACK, "--http-port", str(self.http_port),
                   "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port),
                   "--device", "cpu", *flags]
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log,
                                        stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

    @property
    def ports(self) -> List[int]:
        return [self.http_port, self.grpc_port, self.metrics_port]

    @property
    def http_url(self) -> str:
        return f"{LOOPBACK}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{LOOPBACK}:{self.grpc_port}"

    def log_tail(self, chars: int = 3000) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-chars:]

    def wait_ready(self, model: str = "ccnet", timeout_s: float = 150) -> None:
        """Poll the HTTP health endpoints until the model is ready (bounded)."""
        import tritonclient.http as http

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"ccnet serve exited with {self.process.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                client = http.InferenceServerClient(self.http_url, connection_timeout=2)
                try:
                    if client.is_server_ready() and client.is_model_ready(model):
                        return
                finally:
                    client.close()
            except Exception:  # not listening yet
                pass
            time.sleep(0.5)
        raise AssertionError(f"ccnet serve not ready after {timeout_s} s:\n{self.log_tail()}")

    def wait_for_log(self, text: str, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log_tail(10 ** 9):
                return
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not in the server log after {timeout_s} s")

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM, bounded wait (then SIGKILL); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.log.close()
        return self.process.returncode
