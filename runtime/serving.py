"""``ccnet serve``: a CCNet model behind NVIDIA Triton Inference Server, through PyTriton.

PyTriton starts the ``tritonserver`` binary it ships (HTTP/gRPC KServe v2 endpoints, dynamic
batching, metrics).  Clients call model ``<name>``: a Triton Python-backend model
(``runtime.serving_front``, from a repository folder written for the server's lifetime) that
checks each request on its own — a bad one gets a one-line error, the rest of its batch is
answered — and forwards the decoded pixels to ``<name>_segmenter``, which PyTriton binds to a
Python callable in this process: :class:`SegmentationModel`, one per model instance, each with
its own :class:`~runtime.segmenter.Segmenter` (ONNX Runtime, TensorRT or PyTorch by the
model's file type).  Tensor contract: ``runtime.serving_contract``.

Triton's dynamic batcher only groups requests whose inputs have the same shape, so a batch holds
images of one size; each image still goes through ``Segmenter.segment`` on its own, so a
served label map is bit-identical to segmenting the image in-process.

Lifecycle: the model instances are created and warmed up (one inference each) before Triton
starts, so Triton reports the model ready only when it can answer at full speed.  ``stop``
sends Triton SIGINT: it stops accepting requests, lets in-flight ones finish (up to
``shutdown_timeout`` seconds) and exits; then the instances are closed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import signal
import shutil
import socket
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.labels import label_dtype

from .segmenter import Segmenter
from .serving_contract import (DEFAULT_MAX_IMAGE_SIDE, ENCODED, IMAGE, LABELS, LOGITS,
                               BadRequest, request_images, stack_outputs)
from .triton_repo import (check_model_name, python_model_config, render_config,
                          write_python_model)

FRONT_MODULE = "runtime.serving_front"
PYTRITON_HINT = "pip install 'ccnet-deploy[serve]' (nvidia-pytriton and tritonclient)"


@dataclass
class ServeOptions:
    """How ``ccnet serve`` runs Triton.  ``max_batch_size`` 0 turns batching off (inputs then
    have no batch dimension); ``logits`` adds the FP32 C×H×W ``logits`` output."""

    name: str = "ccnet"
    address: str = "0.0.0.0"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch_size: int = 4
    instances: int = 1
    batch_delay_us: int = 0
    logits: bool = False
    max_image_side: int = DEFAULT_MAX_IMAGE_SIDE
    shutdown_timeout: int = 30
    log_batches: bool = False

    def __post_init__(self):
        minimum = {"max_batch_size": 0, "batch_delay_us": 0, "instances": 1,
                   "max_image_side": 1, "shutdown_timeout": 1}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise CCNetError(f"--{name.replace('_', '-')} must be >= {low}, got "
                                 f"{getattr(self, name)}")
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise CCNetError(f"HTTP, gRPC and metrics ports must be three different ports in "
                             f"1..65535, got {ports}")
        check_model_name(self.name)

    @property
    def batched(self) -> bool:
        return self.max_batch_size > 0

    @property
    def segmenter_name(self) -> str:
        """The Triton model PyTriton binds the segmenters to (clients call ``name``)."""
        return f"{self.name}_segmenter"


class SegmentationModel:
    """The callable PyTriton runs for one model instance: a batch of requests → one response
    dict per request.

    Requests reach it checked by the front model; it checks them again because PyTriton
    answers a whole batch with one error when the callable raises: every request is checked
    before any is segmented, and the error names the bad request.
    """

    def __init__(self, segmenter: Segmenter, options: ServeOptions,
                 log: Optional[Callable[[str], None]] = None):
        self.segmenter = segmenter
        self.options = options
        self.log = log

    def _images(self, requests) -> List[List[np.ndarray]]:
        images = []
        for index, request in enumerate(requests):
            try:
                images.append(request_images(request.data.get(IMAGE), request.data.get(ENCODED),
                                             self.options.batched, self.options.max_image_side))
            except BadRequest as e:
                if len(requests) == 1:
                    raise
                raise BadRequest(f"request {index + 1} of {len(requests)} in this batch: "
                                 f"{e}") from None
        return images

    def _answer(self, images: List[np.ndarray], want_logits: bool) -> Dict[str, np.ndarray]:
        # Segmenter label maps are already in the served dtype (ccnet.labels.label_dtype).
        batched = self.options.batched
        if not want_logits:  # the fast path: no full-size logits are ever built
            labels = [self.segmenter.segment(image) for image in images]
            return {LABELS: stack_outputs(labels, batched)}
        predictions = [self.segmenter.predict(image) for image in images]
        return {LABELS: stack_outputs([p.labels for p in predictions], batched),
                LOGITS: stack_outputs([p.logits.astype(np.float32, copy=False)
                                       for p in predictions], batched)}

    def __call__(self, requests) -> List[Dict[str, np.ndarray]]:
        images = self._images(requests)
        if self.log:
            sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for ims in images for im in ims})
            self.log(f"batch: {len(requests)} request(s), {sum(map(len, images))} image(s) "
                     f"{', '.join(sizes)}")
        return [self._answer(frames, self.options.logits
                             and LOGITS in (request.requested_output_names or [LABELS]))
                for request, frames in zip(requests, images)]


def warm_up(segmenter: Segmenter) -> None:
    """One inference on an image at the model's test scale (landscape), so the first request
    pays no lazy initialisation (ORT arenas, TensorRT contexts, oneDNN kernels)."""
    long_side, short_side = max(segmenter.meta.test_scale), min(segmenter.meta.test_scale)
    ramp = np.linspace(0, 255, long_side, dtype=np.float32).astype(np.uint8)
    segmenter.segment(np.ascontiguousarray(np.broadcast_to(ramp[None, :, None],
                                                           (short_side, long_side, 3))))


def write_front_model(repo: str, options: ServeOptions, num_classes: int) -> None:
    """Write the front model ``<repo>/<name>`` (``runtime.serving_front``) for ``options``."""
    config = python_model_config(
        options.name, num_classes, options.max_batch_size, options.instances,
        {"segmenter_model": options.segmenter_name,
         "max_image_side": str(options.max_image_side)}, logits=options.logits,
        batch_delay_us=options.batch_delay_us)
    text = render_config(config, (f"ccnet serve: checks requests, forwards them to "
                                  f"{options.segmenter_name}",))
    write_python_model(os.path.join(repo, options.name), text, FRONT_MODULE)


def check_port_free(address: str, port: int, flag: str) -> None:
    """One-line error when ``port`` cannot be bound on ``address`` (Triton would exit later
    with a long log instead)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((address, port))
        except OSError as e:
            why = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise CCNetError(f"port {port} ({flag}) {why} on {address}: stop what holds it or "
                             f"pick another {flag}") from None


@contextlib.contextmanager
def interpreter_libpython_first(environ=os.environ) -> Iterator[Optional[str]]:
    """Put this interpreter's library folder first on ``LD_LIBRARY_PATH`` while Triton starts.

    Triton's Python-backend stub (which hosts PyTriton's proxy model) loads
    ``libpython3.X.so.1.0`` by name; with a second libpython of the same minor version on the
    system (a distribution's next to pyenv's or conda's), it may load that one, whose
    ``threading`` internals differ, and the model fails to load.  The server process copies
    the environment when it starts, so the change is undone afterwards.
    """
    libdir = sysconfig.get_config_var("LIBDIR")
    before = environ.get("LD_LIBRARY_PATH")
    if libdir and os.path.isdir(libdir):
        rest = [p for p in (before or "").split(os.pathsep) if p and p != libdir]
        environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir] + rest)
    try:
        yield libdir
    finally:
        if before is None:
            environ.pop("LD_LIBRARY_PATH", None)
        else:
            environ["LD_LIBRARY_PATH"] = before


def explain_start_failure(error: BaseException, name: str) -> str:
    """A one-line reason for Triton failing to start or to load the model."""
    text = str(error)
    if "_recursion_count" in text or "libpython" in text:
        libdir = sysconfig.get_config_var("LIBDIR")
        if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
            fix = ("this interpreter has no shared libpython: use a Python built with "
                   "--enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)")
        else:
            fix = (f"{libdir} was put first on LD_LIBRARY_PATH and still lost: remove the other "
                   "libpython of this version from the loader's path (ldconfig -p | grep "
                   "libpython)")
        return (f"Triton's Python-backend stub loaded another libpython than this interpreter's, "
                f"so model {name!r} could not load: {fix}")
    return f"Triton could not start model {name!r}: {first_line(error)} (see the log above)"


class SegmentationServer:
    """Triton (through PyTriton) serving one model; a context manager.

    >>> with SegmentationServer("model.onnx", ServeOptions(http_port=8000)) as server:
    ...     server.wait()          # until stop() or the server exits
    """

    def __init__(self, model: str, options: Optional[ServeOptions] = None,
                 backend: Optional[str] = None, log: Optional[Callable[[str], None]] = None,
                 **segmenter_opts):
        self.model = model
        self.options = options or ServeOptions()
        self.backend = backend
        self.segmenter_opts = segmenter_opts
        self.log = log
        self.segmenters: List[Segmenter] = []
        self.triton = None
        self.repo: Optional[str] = None
        self._stopped = threading.Event()

    @property
    def meta(self):
        return self.segmenters[0].meta

    def _tensors(self):
        from pytriton.model_config import Tensor

        meta = self.meta
        inputs = [Tensor(name=IMAGE, dtype=np.uint8, shape=(-1, -1, 3), optional=True),
                  Tensor(name=ENCODED, dtype=bytes, shape=(1,), optional=True)]
        outputs = [Tensor(name=LABELS, dtype=label_dtype(meta.num_classes).type, shape=(-1, -1))]
        if self.options.logits:
            outputs.append(Tensor(name=LOGITS, dtype=np.float32,
                                  shape=(meta.num_classes, -1, -1)))
        return inputs, outputs

    def _triton_config(self):
        from pytriton.triton import TritonConfig

        o = self.options
        return TritonConfig(model_repository=self.repo,
                            http_address=o.address, http_port=o.http_port,
                            grpc_address=o.address, grpc_port=o.grpc_port,
                            metrics_address=o.address, metrics_port=o.metrics_port,
                            exit_timeout_secs=o.shutdown_timeout, log_verbose=0)

    def _load_segmenters(self) -> None:
        for _ in range(self.options.instances):
            segmenter = Segmenter(self.model, self.backend, **self.segmenter_opts)
            if self.options.logits:
                try:
                    segmenter.require_logits("serve it without --logits")
                except CCNetError:
                    segmenter.close()
                    raise
            self.segmenters.append(segmenter)
            warm_up(segmenter)

    def start(self) -> "SegmentationServer":
        """Load and warm up the instances, then start Triton and wait until the model is
        ready; one-line CCNetError on any failure (nothing left running)."""
        try:
            from pytriton.model_config import ModelConfig
            from pytriton.triton import Triton
        except ImportError as e:
            raise CCNetError(f"PyTriton is not importable ({first_line(e)}): {PYTRITON_HINT}") \
                from None
        o = self.options
        for port, flag in ((o.http_port, "--http-port"), (o.grpc_port, "--grpc-port"),
                           (o.metrics_port, "--metrics-port")):
            check_port_free(o.address, port, flag)
        try:
            self._load_segmenters()
            self.repo = tempfile.mkdtemp(prefix="ccnet-serve-")
            inputs, outputs = self._tensors()
            callables = [SegmentationModel(s, o, self.log if o.log_batches else None)
                         for s in self.segmenters]
            # Batches form in the front model (its config has the delay), which forwards their
            # requests one by one: nothing should wait here (PyTriton's default batcher has no
            # queue delay).
            config = ModelConfig(batching=o.batched, max_batch_size=o.max_batch_size)
            self.triton = Triton(config=self._triton_config())
            self.triton.bind(model_name=o.segmenter_name, infer_func=callables, inputs=inputs,
                             outputs=outputs, config=config, strict=True)
            with interpreter_libpython_first():
                self.triton.run()
            self._load_front_model()
        except CCNetError:
            self.stop()
            raise
        except Exception as e:  # PyTriton/tritonclient errors, timeouts while loading
            self.stop()
            raise CCNetError(explain_start_failure(e, o.name)) from None
        return self

    def _load_front_model(self) -> None:
        """Write and load the model clients call, after PyTriton's segmenter model is ready:
        Triton reports ``<name>`` ready only when a request can go all the way through."""
        import tritonclient.http as http
        from pytriton.client.auth import create_auth_headers

        o = self.options
        write_front_model(self.repo, o, self.meta.num_classes)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(o.address, o.address)
        client = http.InferenceServerClient(f"[{host}]:{o.http_port}" if ":" in host
                                            else f"{host}:{o.http_port}")
        try:
            # Loading is a protected endpoint of PyTriton's server: it takes the server's token.
            client.load_model(o.name, headers=create_auth_headers(self.triton.get_access_token(),
                                                                  "http"))
        finally:
            client.close()

    def is_alive(self) -> bool:
        return self.triton is not None and self.triton.is_alive()

    def request_stop(self) -> None:
        """Make :meth:`wait` return (safe from a signal handler); :meth:`stop` does the rest."""
        self._stopped.set()

    def wait(self, poll_s: float = 1.0) -> None:
        """Block until :meth:`stop` is called or Triton exits by itself."""
        while not self._stopped.wait(poll_s):
            if not self.is_alive():
                raise CCNetError("Triton exited unexpectedly: see its log above")

    def stop(self) -> None:
        """Stop Triton (in-flight requests finish first) and release the model instances;
        safe to call twice."""
        self._stopped.set()
        if self.triton is not None:
            self.triton.stop()
            self.triton = None
        for segmenter in self.segmenters:
            segmenter.close()
        self.segmenters = []
        if self.repo is not None:
            shutil.rmtree(self.repo, ignore_errors=True)
            self.repo = None

    def __enter__(self) -> "SegmentationServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(model: str, options: ServeOptions, backend: Optional[str] = None,
          log: Callable[[str], None] = print, **segmenter_opts) -> None:
    """Serve ``model`` until SIGINT or SIGTERM, then shut down gracefully (called from the main
    thread: it installs the signal handlers and restores them)."""
    server = SegmentationServer(model, options, backend, log, **segmenter_opts)
    handlers = {sig: signal.signal(sig, lambda *_: server.request_stop())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with server:
            meta, o = server.meta, options
            log(f"serving {model} as model {o.name!r} ({server.segmenters[0].backend}, "
                f"{meta.num_classes} classes, {o.instances} instance(s), max batch size "
                f"{o.max_batch_size}): http://{o.address}:{o.http_port}  grpc "
                f"{o.address}:{o.grpc_port}  metrics http://{o.address}:{o.metrics_port}"
                "/metrics — ready; SIGINT/SIGTERM stops")
            server.wait()
            log("shutting down: finishing in-flight requests")
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def options_from(**values) -> ServeOptions:
    """``ServeOptions`` from keyword values such as a CLI's parsed arguments; keys that are not
    options (the model, the backend...) are ignored."""
    names = {f.name for f in dataclasses.fields(ServeOptions)}
    return ServeOptions(**{k: v for k, v in values.items() if k in names})
