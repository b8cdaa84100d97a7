"""runtime/trt_cuda.py against the real CUDA runtime (marker ``gpu``; no TensorRT needed):
page-locked buffers, a captured graph replayed with new data, and use from another thread with
no context setup.  Skips where polygraphy finds no usable CUDA runtime or GPU."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from ccnet.errors import CCNetError

pytestmark = pytest.mark.gpu


@pytest.fixture
def stream():
    from runtime.trt_cuda import new_stream

    try:
        stream = new_stream()
    except CCNetError as e:
        pytest.skip(str(e))
    yield stream
    stream.free()


def test_pinned_copies_and_graph_replay_from_any_thread(stream):
    from polygraphy import cuda

    from runtime.trt_cuda import CudaGraph, PinnedArray, copy_async, synchronize

    source, target = PinnedArray((4, 1000), np.float32), PinnedArray((4, 1000), np.float32)
    nbytes = source.array.nbytes
    first, second = cuda.DeviceArray.raw((nbytes,)), cuda.DeviceArray.raw((nbytes,))
    graph = CudaGraph(stream.ptr, lambda: cuda.wrapper().memcpy(
        second.ptr, first.ptr, nbytes, cuda.MemcpyKind.DeviceToDevice, stream_ptr=stream.ptr))

    def round_trip(values):
        source.array[...] = values
        copy_async(first.ptr, source.ptr, nbytes, True, stream.ptr)
        graph.launch(stream.ptr)
        copy_async(target.ptr, second.ptr, nbytes, False, stream.ptr)
        synchronize(stream.ptr)
        return target.array.copy()

    values = np.arange(4000, dtype=np.float32).reshape(4, 1000)
    np.testing.assert_array_equal(round_trip(values), values)
    np.testing.assert_array_equal(round_trip(3 * values), 3 * values)  # replay, new data
    results = []
    worker = threading.Thread(target=lambda: results.append(round_trip(7.0)))
    worker.start()
    worker.join()
    assert results and (results[0] == 7.0).all()
    graph.free()
    for buffer in (source, target, first, second):
        buffer.free()
