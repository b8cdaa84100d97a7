"""Run a TensorRT engine behind the runner interface (``TrtRunner``)."""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np

from ccnet.errors import CCNetError
from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
from ccnet.runner import Runner

from .engine_info import find_label_head_profile, find_profile
from .trt_common import import_tensorrt
from .trt_cuda import CudaGraph, PinnedArray, copy_async, new_stream, synchronize
from .trt_engine import deserialize_engine, engine_runtime


class TrtRunner(Runner):
    """A TensorRT engine built by ``ccnet build`` behind ``infer(batch)``.

    Loading is polygraphy's (``trt_engine``: side file, compatibility rules, plugin, then
    ``EngineFromBytes`` once the CUDA stream has made the primary context current), device
    memory and copies are ``polygraphy.cuda``'s.  The runner itself is ours because
    polygraphy's ``TrtRunner`` lacks what the video path needs: a CUDA stream the caller may own
    (polygraphy creates one per activation), page-locked host buffers for asynchronous copies
    (polygraphy copies from pageable numpy arrays), and CUDA-graph replay of the enqueue
    (``trt_cuda``).

    ``plugins``: libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/); ``cuda_graph``:
    capture and replay a CUDA graph while the input shape stays the same; ``stream``: a CUDA
    stream handle owned by the caller (default: one of the runner's own).  Everything lives in
    the device's primary context, so ``infer`` may be called from any thread (one at a time).
    """

    name = "tensorrt"

    def __init__(self, engine_path: str, plugins: Optional[str] = None,
                 cuda_graph: bool = False, verbose: bool = False, stream: Optional[int] = None):
        self.path = engine_path
        runtime, self.info = engine_runtime(engine_path, plugins)  # side file, version, plugin
        self._own_stream = new_stream() if stream is None else None  # primary context first
        self.stream = self._own_stream.ptr if stream is None else int(stream)
        self.engine = self.context = None
        self._buffers = {}  # name -> (DeviceArray, PinnedArray)
        self._graph: Optional[CudaGraph] = None
        try:
            self.engine = deserialize_engine(runtime, engine_path, verbose)
            self.context = self.engine.create_execution_context()
        except BaseException:
            self._free_stream()
            raise
        self.label_head = self.info.label_head
        super().__init__(self.info.model_meta(),
                         "label_map" if self.label_head else self.info.output_kind)
        self.input_name, self.output_name = self.info.input_name, self.info.output_name
        trt = import_tensorrt()
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        self.use_cuda_graph = bool(cuda_graph)
        self._shape = self._profile = None
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- buffers
    def _free_buffers(self) -> None:
        if self._graph is not None:
            self._graph.free()
            self._graph = None
        for device, host in self._buffers.values():
            device.free()
            host.free()
        self._buffers = {}

    def _prepare(self, shape, size=None) -> None:
        """Profile, input shape(s) and a device + page-locked buffer pair per tensor; ``size``:
        the label head's output size."""
        from polygraphy import cuda

        profile = find_profile(shape, self.info)  # one-line error giving the range
        if profile != self._profile:
            if not self.context.set_optimization_profile_async(profile, self.stream):
                raise CCNetError(f"TensorRT cannot select profile {profile} of {self.path}")
            self._profile = profile
        if not self.context.set_input_shape(self.input_name, tuple(shape)):
            raise CCNetError(f"TensorRT rejected input shape {tuple(shape)} for {self.path}")
        tensors = [(self.input_name, tuple(shape), self.input_dtype)]
        if size is not None:
            # An empty tensor still needs a (1-byte) buffer bound; TensorRT reads its shape only.
            size_shape = label_head_feed(size).shape
            if not self.context.set_input_shape(LABEL_HEAD_INPUT, size_shape):
                find_label_head_profile(size, self.info)  # one-line error giving the range
                raise CCNetError(f"TensorRT rejected output size {size} for {self.path}")
            tensors.append((LABEL_HEAD_INPUT, size_shape, np.float32))
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        self._free_buffers()
        for name, shp, dtype in tensors + [(self.output_name, out_shape, self.output_dtype)]:
            host = PinnedArray(shp, dtype)
            device = cuda.DeviceArray.raw((max(host.array.nbytes, 1),))
            self._buffers[name] = (device, host)
            if not self.context.set_tensor_address(name, device.ptr):
                raise CCNetError(f"TensorRT rejected the buffer for {name!r} of {self.path}")
        self._shape = (tuple(shape), size)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise CCNetError(f"TensorRT execution failed for {self.path} (rerun with verbose=True)")

    def _run(self) -> None:
        """One inference on the prepared buffers: plain enqueue, or the captured graph (after
        one plain enqueue, which TensorRT needs after a shape change before a capture)."""
        if not self.use_cuda_graph:
            self._enqueue()
            return
        if self._graph is None:
            self._enqueue()
            synchronize(self.stream)
            self._graph = CudaGraph(self.stream, self._enqueue)
        self._graph.launch(self.stream)

    # ---------------------------------------------------------------- inference
    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.label_head:
            raise CCNetError(f"{self.path} has a label head: call infer_labels(batch, (H, W))")
        return self._infer(batch, None)

    def infer_labels(self, batch: np.ndarray, size) -> np.ndarray:
        if not self.label_head:
            return super().infer_labels(batch, size)
        return self._infer(batch, (int(size[0]), int(size[1])))

    def _infer(self, batch: np.ndarray, size) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        with self._lock:
            if (batch.shape, size) != self._shape:
                self._prepare(batch.shape, size)
            in_device, in_host = self._buffers[self.input_name]
            out_device, out_host = self._buffers[self.output_name]
            in_host.array[...] = batch
            copy_async(in_device.ptr, in_host.ptr, batch.nbytes, True, self.stream)
            self._run()
            copy_async(out_host.ptr, out_device.ptr, out_host.array.nbytes, False, self.stream)
            synchronize(self.stream)
            out = out_host.array.copy()
        return out.astype(np.float32, copy=False) if self.output_kind == "logits" else out

    def _free_stream(self) -> None:
        if self._own_stream is not None:
            self._own_stream.free()
            self._own_stream = None

    def release(self) -> None:
        self._free_buffers()
        self.context = self.engine = None
        self._free_stream()
