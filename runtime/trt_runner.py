"""Run a TensorRT engine behind the runner interface (``TrtRunner``).

Order of checks, each a one-line error: side file (metadata, TensorRT version, profile) →
``import tensorrt`` → version match → plugin library loaded and registered → deserialize
(corrupt file / other GPU) → per call: input shape inside the profile.  Device memory through
cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``), or pycuda when that is
what is installed; pinned host buffers; async copies and ``execute_async_v3`` on one stream;
optional CUDA graph replay when the input shape repeats (video at a fixed size).
"""
from __future__ import annotations

import ctypes
import os
from typing import Optional

import numpy as np

from ccnet.errors import CCNetError
from ccnet.runner import Runner

from .engine_info import check_tensorrt_version, find_profile, read_engine_info
from .trt_common import (import_tensorrt, load_plugin_library, make_logger,
                         resolve_plugin_library, tensorrt_version)

CUDA_HINT = "pip install cuda-python (or pycuda) for TensorRT device buffers"


class _CudaPython:
    """Minimal CUDA runtime calls through cuda-python."""

    def __init__(self):
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.8 layout
        self.rt = cudart
        self.stream = self._ok(cudart.cudaStreamCreate())

    def _ok(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            name = self.rt.cudaGetErrorName(err)[1]
            raise CCNetError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @property
    def stream_handle(self) -> int:
        return int(self.stream)

    def malloc(self, nbytes: int) -> int:
        return int(self._ok(self.rt.cudaMalloc(max(int(nbytes), 1))))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def host_array(self, shape, dtype) -> tuple:
        """(pinned numpy array, handle to free)."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        ptr = int(self._ok(self.rt.cudaMallocHost(max(nbytes, 1))))
        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape), ptr

    def free_host(self, handle) -> None:
        self.rt.cudaFreeHost(handle)

    def htod(self, dst: int, host: np.ndarray) -> None:
        self._ok(self.rt.cudaMemcpyAsync(dst, host.ctypes.data, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice,
                                         self.stream))

    def dtoh(self, host: np.ndarray, src: int) -> None:
        self._ok(self.rt.cudaMemcpyAsync(host.ctypes.data, src, host.nbytes,
                                         self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                                         self.stream))

    def sync(self) -> None:
        self._ok(self.rt.cudaStreamSynchronize(self.stream))

    # CUDA graphs: capture one enqueue, replay it.
    def begin_capture(self) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._ok(self.rt.cudaStreamBeginCapture(self.stream, mode))

    def end_capture(self):
        graph = self._ok(self.rt.cudaStreamEndCapture(self.stream))
        return self._ok(self.rt.cudaGraphInstantiate(graph, 0)), graph

    def launch(self, graph_exec) -> None:
        self._ok(self.rt.cudaGraphLaunch(graph_exec, self.stream))

    def destroy_graph(self, graph_exec, graph) -> None:
        self.rt.cudaGraphExecDestroy(graph_exec)
        self.rt.cudaGraphDestroy(graph)

    supports_graphs = True


class _PyCuda:
    """The same calls through pycuda (no CUDA graph support here)."""

    supports_graphs = False

    def __init__(self):
        import pycuda.autoinit  # noqa: F401  (creates the context)
        import pycuda.driver as drv

        self.drv = drv
        self.stream = drv.Stream()

    @property
    def stream_handle(self) -> int:
        return int(self.stream.handle)

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(max(int(nbytes), 1))
        self._keep = getattr(self, "_keep", {})
        self._keep[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._keep.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def host_array(self, shape, dtype) -> tuple:
        array = self.drv.pagelocked_empty(tuple(shape), dtype)
        return array, array

    def free_host(self, handle) -> None:
        pass  # freed with the array

    def htod(self, dst: int, host: np.ndarray) -> None:
        self.drv.memcpy_htod_async(dst, host, self.stream)

    def dtoh(self, host: np.ndarray, src: int) -> None:
        self.drv.memcpy_dtoh_async(host, src, self.stream)

    def sync(self) -> None:
        self.stream.synchronize()


def _cuda_api():
    try:
        return _CudaPython()
    except ImportError:
        pass
    try:
        return _PyCuda()
    except ImportError:
        raise CCNetError(f"no CUDA Python bindings: {CUDA_HINT}") from None


class TrtRunner(Runner):
    """A TensorRT engine (built by ccnet-build) behind ``infer(batch)``.

    ``plugins``: libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/); ``cuda_graph``:
    capture and replay a CUDA graph while the input shape stays the same.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str, plugins: Optional[str] = None,
                 cuda_graph: bool = False, verbose: bool = False):
        if not os.path.isfile(engine_path):
            raise CCNetError(f"engine not found: {engine_path}")
        self.path = engine_path
        self.info = read_engine_info(engine_path)
        super().__init__(self.info.model_meta(), self.info.output_kind)
        trt = import_tensorrt()
        self.trt = trt
        check_tensorrt_version(self.info, tensorrt_version(trt), engine_path)
        if self.info.plugin or plugins:
            library = resolve_plugin_library(plugins, required=True)
            load_plugin_library(trt, library)
        self.logger = make_logger(trt, verbose)
        self.runtime = trt.Runtime(self.logger)
        if self.info.version_compatible and hasattr(self.runtime, "engine_host_code_allowed"):
            self.runtime.engine_host_code_allowed = True  # VC engines embed the lean runtime
        with open(engine_path, "rb") as f:
            data = f.read()
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise CCNetError(
                f"TensorRT {tensorrt_version(trt)} cannot deserialize {engine_path}: the file is "
                "corrupt, was built for another GPU, or needs a plugin that is not loaded "
                "(pass --plugins / set CCNET_PLUGIN_LIB); rebuild it with ccnet-build")
        self.context = self.engine.create_execution_context()
        self.input_name, self.output_name = self.info.input_name, self.info.output_name
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.cuda = _cuda_api()
        self.use_cuda_graph = bool(cuda_graph) and self.cuda.supports_graphs
        self._shape = None
        self._profile = None
        self._buffers = {}  # name -> (device ptr, pinned host array, host handle)
        self._graph = None

    # ---------------------------------------------------------------- buffers
    def _release(self) -> None:
        if self._graph is not None:
            self.cuda.destroy_graph(*self._graph)
            self._graph = None
        for ptr, _, handle in self._buffers.values():
            self.cuda.free(ptr)
            self.cuda.free_host(handle)
        self._buffers = {}

    def _prepare(self, shape) -> None:
        profile = find_profile(shape, self.info)  # one-line error giving the range
        if profile != self._profile:
            self.context.set_optimization_profile_async(profile, self.cuda.stream_handle)
            self._profile = profile
        if not self.context.set_input_shape(self.input_name, tuple(shape)):
            raise CCNetError(f"TensorRT rejected input shape {tuple(shape)} for {self.path}")
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        self._release()
        for name, shp, dtype in ((self.input_name, tuple(shape), self.input_dtype),
                                 (self.output_name, out_shape, self.output_dtype)):
            host, handle = self.cuda.host_array(shp, dtype)
            ptr = self.cuda.malloc(host.nbytes)
            self._buffers[name] = (ptr, host, handle)
            self.context.set_tensor_address(name, ptr)
        self._shape = tuple(shape)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise CCNetError(f"TensorRT execution failed for {self.path} (rerun with verbose=True)")

    # ---------------------------------------------------------------- inference
    def infer(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        if batch.shape != self._shape:
            self._prepare(batch.shape)
        in_ptr, in_host, _ = self._buffers[self.input_name]
        out_ptr, out_host, _ = self._buffers[self.output_name]
        in_host[...] = batch
        self.cuda.htod(in_ptr, in_host)
        if self.use_cuda_graph:
            if self._graph is None:
                self._enqueue()  # TensorRT needs one plain enqueue after a shape change
                self.cuda.sync()
                self.cuda.begin_capture()
                self._enqueue()
                self._graph = self.cuda.end_capture()
            self.cuda.launch(self._graph[0])
        else:
            self._enqueue()
        self.cuda.dtoh(out_host, out_ptr)
        self.cuda.sync()
        out = out_host.copy()
        return out.astype(np.float32, copy=False) if self.output_kind == "logits" else out

    def release(self) -> None:
        if getattr(self, "cuda", None) is not None:
            self._release()
        self.context = self.engine = None
