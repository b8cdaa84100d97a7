"""Page-locked host buffers and CUDA-graph replay on top of ``polygraphy.cuda``.

polygraphy.cuda (its wrapper around the CUDA runtime library, ``Stream``, ``DeviceArray``)
gives device memory, streams and copies; it has no page-locked host memory and no stream
capture, which the video path needs (copies that run asynchronously, one graph launch per
frame).  Those few calls go through the same library handle (``cuda.wrapper().handle``) and the
same status check.  The CUDA runtime API works in the device's primary context and makes it
current in every thread that calls it, so what is created in one thread can be used from
another -- no context of our own, nothing to push or pop.
"""
from __future__ import annotations

import ctypes

import numpy as np

# cudaStreamCaptureModeThreadLocal (driver_types.h), the mode trtexec captures with: other
# threads may keep making unrelated CUDA calls during the capture.
CAPTURE_THREAD_LOCAL = 1


def _cudart():
    from polygraphy import cuda

    return cuda.wrapper()


def new_stream():
    """A polygraphy ``cuda.Stream``; creating it makes the primary context current on this
    thread.  No CUDA runtime library or no usable GPU is a one-line error."""
    from polygraphy import cuda
    from polygraphy.exception import PolygraphyException

    from ccnet.errors import CCNetError, first_line

    try:
        return cuda.Stream()
    except (OSError, PolygraphyException) as e:
        raise CCNetError(f"CUDA is not usable here ({first_line(e)}): TensorRT engines need an "
                         "NVIDIA GPU and the CUDA runtime (pip install nvidia-cuda-runtime-cu12 "
                         "for TensorRT 10.x wheels)") from None


def _void(value=None) -> ctypes.c_void_p:
    return ctypes.c_void_p(value)


class PinnedArray:
    """A numpy array in page-locked host memory (``cudaMallocHost``), freed by ``free()``."""

    def __init__(self, shape, dtype):
        dtype = np.dtype(dtype)
        count = int(np.prod(shape))
        nbytes = max(count * dtype.itemsize, 1)
        ptr = _void()
        lib = _cudart()
        lib.check(lib.handle.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(nbytes)))
        self.ptr = ptr.value
        buffer = (ctypes.c_byte * nbytes).from_address(self.ptr)
        self.array = np.frombuffer(buffer, dtype, count=count).reshape(shape)

    def free(self) -> None:
        if self.ptr:
            lib = _cudart()
            lib.check(lib.handle.cudaFreeHost(_void(self.ptr)))
            self.ptr, self.array = 0, None


def copy_async(dst: int, src: int, nbytes: int, to_device: bool, stream: int) -> None:
    """``cudaMemcpyAsync`` between a page-locked host buffer and device memory."""
    from polygraphy import cuda

    kind = cuda.MemcpyKind.HostToDevice if to_device else cuda.MemcpyKind.DeviceToHost
    _cudart().memcpy(dst, src, nbytes, kind, stream_ptr=stream)


def synchronize(stream: int) -> None:
    _cudart().stream_synchronize(stream)


class CudaGraph:
    """The CUDA work that ``enqueue()`` puts on ``stream``, captured once and replayed with
    ``launch()`` (TensorRT's enqueueV3 is capturable unless the engine streams weights,
    NvInferRuntime.h)."""

    def __init__(self, stream: int, enqueue):
        lib = _cudart()
        mode = ctypes.c_int(CAPTURE_THREAD_LOCAL)
        lib.check(lib.handle.cudaStreamBeginCapture(_void(stream), mode))
        graph = _void()
        try:
            enqueue()
        finally:  # always end the capture, or the stream stays unusable
            lib.check(lib.handle.cudaStreamEndCapture(_void(stream), ctypes.byref(graph)))
        self.graph = graph.value
        executable = _void()
        lib.check(lib.handle.cudaGraphInstantiateWithFlags(ctypes.byref(executable),
                                                           _void(self.graph),
                                                           ctypes.c_ulonglong(0)))
        self.executable = executable.value

    def launch(self, stream: int) -> None:
        lib = _cudart()
        lib.check(lib.handle.cudaGraphLaunch(_void(self.executable), _void(stream)))

    def free(self) -> None:
        lib = _cudart()
        if self.executable:
            lib.check(lib.handle.cudaGraphExecDestroy(_void(self.executable)))
        if self.graph:
            lib.check(lib.handle.cudaGraphDestroy(_void(self.graph)))
        self.executable = self.graph = None
