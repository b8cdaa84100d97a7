"""Small doubles of TensorRT and of the CUDA runtime library, to drive *our* control flow on
machines without TensorRT or a GPU.

Each class follows documented behaviour and names where it is documented (TensorRT headers
``include/NvInfer*.h``, the Python bindings ``python/src/infer/*.cpp`` and their docstrings
``python/docstrings/infer/*.h``, onnx-tensorrt's ``ModelImporter.cpp``, the CUDA runtime API).
They never compute model outputs: "parsing" reads only the ONNX structure, an "engine"
deserializes to shapes and names, and an enqueue checks its preconditions and writes nothing.
"""
from __future__ import annotations

import ctypes
import json
import threading
import types
from typing import Dict, List, Optional

import numpy as np

# ============================================================================ CUDA runtime
def _value(arg):
    """The integer behind a ctypes argument (c_void_p, c_int, c_size_t) or a plain int."""
    value = getattr(arg, "value", arg)
    return 0 if value is None else int(value)


class FakeCudaRuntime:
    """The few libcudart entry points polygraphy.cuda and runtime/trt_cuda.py call, with the
    CUDA runtime API's context rule: a thread with no current context gets the device's primary
    context bound on its first runtime call ("Initialization" / "Context Management", CUDA
    Runtime API).  Memory belongs to the context it was allocated in."""

    PRIMARY = "primary"

    def __init__(self):
        self._thread = threading.local()
        self._next = 0x1000
        self.device: Dict[int, tuple] = {}  # ptr -> (context, bytearray)
        self.host: Dict[int, ctypes.Array] = {}  # page-locked buffers (real host memory)
        self.streams: Dict[int, str] = {}
        self.capturing: Dict[int, list] = {}
        self.graphs: Dict[int, list] = {}
        self.launches = 0
        self.calls: List[str] = []

    # ---------------------------------------------------------------- contexts
    def current_context(self) -> str:
        """The context current on the calling thread, binding the primary one if none is."""
        if getattr(self._thread, "context", None) is None:
            self._thread.context = self.PRIMARY
        return self._thread.context

    def push_context(self, name: str) -> None:
        """What a driver-API context push (cuCtxPushCurrent) does to the calling thread."""
        self._thread.context = name

    def driver_context(self) -> Optional[str]:
        """The driver API binds nothing implicitly: None when the thread has no context."""
        return getattr(self._thread, "context", None)

    def _new_handle(self) -> int:
        self._next += 0x100
        return self._next

    def _out(self, pointer_arg, value: int) -> int:
        pointer_arg._obj.value = value  # ctypes.byref(c_void_p()) -> write through it
        return 0

    # ---------------------------------------------------------------- streams and memory
    def cudaStreamCreate(self, pstream):
        self.calls.append("cudaStreamCreate")
        handle = self._new_handle()
        self.streams[handle] = self.current_context()
        return self._out(pstream, handle)

    def cudaStreamDestroy(self, stream):
        self.streams.pop(_value(stream), None)
        return 0

    def cudaStreamSynchronize(self, stream):
        self.current_context()
        return 0

    def cudaMalloc(self, pptr, size):
        handle = self._new_handle()
        self.device[handle] = (self.current_context(), bytearray(_value(size)))
        return self._out(pptr, handle)

    def cudaFree(self, ptr):
        self.device.pop(_value(ptr), None)
        return 0

    def cudaMallocHost(self, pptr, size):
        buffer = ctypes.create_string_buffer(max(_value(size), 1))
        address = ctypes.addressof(buffer)
        self.host[address] = buffer
        return self._out(pptr, address)

    def cudaFreeHost(self, ptr):
        self.host.pop(_value(ptr), None)
        return 0

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream=None):
        """Copies need the device side in the calling thread's context (cudaErrorInvalidValue
        otherwise)."""
        dst, src, nbytes, kind = _value(dst), _value(src), _value(nbytes), _value(kind)
        context = self.current_context()
        if kind == 1:  # cudaMemcpyHostToDevice
            owner, memory = self.device[dst]
            memory[:nbytes] = ctypes.string_at(src, nbytes)
        else:  # cudaMemcpyDeviceToHost
            owner, memory = self.device[src]
            ctypes.memmove(dst, bytes(memory[:nbytes]), nbytes)
        return 0 if owner == context else 1

    def cudaMemcpy(self, dst, src, nbytes, kind):
        return self.cudaMemcpyAsync(dst, src, nbytes, kind)

    # ---------------------------------------------------------------- graphs
    def cudaStreamBeginCapture(self, stream, mode):
        self.capturing[_value(stream)] = []
        return 0

    def record(self, stream: int, work: str) -> bool:
        """Work enqueued on ``stream``: captured when the stream is capturing."""
        if stream in self.capturing:
            self.capturing[stream].append(work)
            return True
        return False

    def cudaStreamEndCapture(self, stream, pgraph):
        handle = self._new_handle()
        self.graphs[handle] = self.capturing.pop(_value(stream))
        return self._out(pgraph, handle)

    def cudaGraphInstantiateWithFlags(self, pexec, graph, flags):
        return self._out(pexec, _value(graph))

    def cudaGraphLaunch(self, executable, stream):
        self.launches += 1
        return 0

    def cudaGraphExecDestroy(self, executable):
        return 0

    def cudaGraphDestroy(self, graph):
        self.graphs.pop(_value(graph), None)
        return 0


# ============================================================================ TensorRT
class _Member:
    def __init__(self, enum: str, name: str, value: int):
        self.enum, self.name, self.value = enum, name, value

    def __int__(self):
        return self.value

    def __repr__(self):
        return f"{self.enum}.{self.name}"


class _Enum:
    """A pybind11 enum: members as attributes, ``__members__``, ``int()`` of a member."""

    def __init__(self, name: str, *members: str):
        self.__members__ = {m: _Member(name, m, i) for i, m in enumerate(members)}
        for key, member in self.__members__.items():
            setattr(self, key, member)


class EngineSpec:
    """What a double engine deserializes to: I/O names, dtypes, one profile, its layers."""

    def __init__(self, input_name="input", output_name="logits", classes=21,
                 profile=((1, 3, 64, 64), (1, 3, 64, 96), (1, 3, 128, 128)),
                 plugin_layers=2, needs_plugin=True):
        self.input_name, self.output_name, self.classes = input_name, output_name, classes
        self.profile, self.plugin_layers, self.needs_plugin = profile, plugin_layers, needs_plugin


def make_tensorrt(cudart: FakeCudaRuntime, version: str = "10.16.0.1",
                  engines: Optional[Dict[bytes, EngineSpec]] = None) -> types.ModuleType:
    """A ``tensorrt`` module double.  ``engines``: serialized bytes -> what they deserialize
    to (anything else deserializes to None, as a corrupt plan does)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls, trt.parsers = [], []
    _add_enums(trt)
    trt.ILogger = type("ILogger", (), {"__init__": lambda self: None})
    trt.Logger = type("Logger", (trt.ILogger,), dict(
        INTERNAL_ERROR=0, ERROR=1, WARNING=2, INFO=3, VERBOSE=4,
        __init__=lambda self, severity=2: None))
    trt.nptype = lambda dtype: {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32,
                                "INT64": np.int64, "INT8": np.int8}[dtype.name]
    trt.registry = _PluginRegistry(trt)
    trt.get_plugin_registry = lambda: trt.registry
    trt.init_libnvinfer_plugins = lambda logger, namespace: True
    trt.IPluginV3Layer = _IPluginV3Layer
    trt.Builder = lambda logger: _Builder(trt)
    trt.OnnxParser = lambda network, logger: _OnnxParser(trt, network)
    trt.Runtime = lambda logger: _Runtime(trt, cudart, engines or {})
    return trt


def _add_enums(trt) -> None:
    trt.NetworkDefinitionCreationFlag = _Enum("NetworkDefinitionCreationFlag", "EXPLICIT_BATCH",
                                              "STRONGLY_TYPED")
    trt.LayerType = _Enum("LayerType", "CONVOLUTION", "MATRIX_MULTIPLY", "SOFTMAX", "RESIZE",
                          "SHAPE", "QUANTIZE", "DEQUANTIZE", "PLUGIN_V2", "PLUGIN_V3")
    trt.DataType = _Enum("DataType", "FLOAT", "HALF", "INT8", "INT32", "BOOL", "INT64")
    trt.PluginCapabilityType = _Enum("PluginCapabilityType", "CORE", "BUILD", "RUNTIME")
    trt.BuilderFlag = _Enum("BuilderFlag", "DEBUG", "TF32", "VERSION_COMPATIBLE")
    trt.MemoryPoolType = _Enum("MemoryPoolType", "WORKSPACE", "DLA_MANAGED_SRAM",
                               "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_SHARED_MEMORY")
    trt.ProfilingVerbosity = _Enum("ProfilingVerbosity", "LAYER_NAMES_ONLY", "NONE", "DETAILED")
    trt.DeviceType = _Enum("DeviceType", "GPU", "DLA")
    trt.TensorIOMode = _Enum("TensorIOMode", "NONE", "INPUT", "OUTPUT")
    trt.LayerInformationFormat = _Enum("LayerInformationFormat", "ONELINE", "JSON")
    trt.OnnxParserFlag = _Enum("OnnxParserFlag", "NATIVE_INSTANCENORM", "ENABLE_PLUGIN_OVERRIDE")


# ---------------------------------------------------------------------------- plugins
class _PluginCore:
    """IPluginV3OneCore: plugin_name / plugin_version / plugin_namespace (pyPlugin.cpp)."""

    def __init__(self, name, version, namespace):
        self.plugin_name, self.plugin_version, self.plugin_namespace = name, version, namespace


class _PluginV3:
    """IPluginV3.get_capability_interface(CORE) -> the core interface (pyPlugin.cpp)."""

    def __init__(self, trt, key):
        self._trt, self._core = trt, _PluginCore(*key)

    def get_capability_interface(self, kind):
        return self._core if kind is self._trt.PluginCapabilityType.CORE else None


class _PluginRegistry:
    """IPluginRegistry.load_library: "The call will fail and return None if any of the plugins
    are already registered" (pyPluginDoc.h); get_creator returns None when absent
    (pyPlugin.cpp).  ``libraries`` maps a library path to the creators it registers; a path not
    in it fails to load."""

    def __init__(self, trt):
        self._trt = trt
        self.libraries: Dict[str, list] = {}
        self.creators: Dict[tuple, object] = {}
        self.load_calls: List[str] = []

    def load_library(self, path):
        self.load_calls.append(path)
        keys = self.libraries.get(path)
        if keys is None or any(tuple(k) in self.creators for k in keys):
            return None
        for key in keys:
            self.creators[tuple(key)] = object()
        return object()

    def get_creator(self, name, version, namespace=""):
        return self.creators.get((name, version, namespace))


# ---------------------------------------------------------------------------- network
class _Tensor:
    def __init__(self, name, shape, dtype):
        self.name, self.shape, self.dtype = name, tuple(shape), dtype
        self.is_shape_tensor = False


class _ILayer:
    """INetworkDefinition.get_layer returns a plain ILayer: no ``plugin`` attribute until the
    object is downcast to IPluginV3Layer (pyGraph.cpp binds ``plugin`` on IPluginV3Layer only)."""

    def __init__(self, name, layer_type, outputs, plugin=None):
        self.name, self.type, self._outputs, self._plugin = name, layer_type, outputs, plugin
        self.precision_is_set = False

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_output(self, index):
        return self._outputs[index]


class _IPluginV3Layer(_ILayer):
    @property
    def plugin(self):  # IPluginV3Layer.plugin (pyGraph.cpp, IPluginV3LayerDoc)
        return self._plugin


class _Network:
    def __init__(self, flags):
        self.flags, self.name = flags, "network"
        self.inputs: List[_Tensor] = []
        self.outputs: List[_Tensor] = []
        self.layers: List[_ILayer] = []

    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))
    num_layers = property(lambda self: len(self.layers))

    def get_input(self, i):
        return self.inputs[i]

    def get_output(self, i):
        return self.outputs[i]

    def get_layer(self, i):
        return self.layers[i]

    def get_flag(self, flag):
        return bool(self.flags & (1 << int(flag)))

    def __iter__(self):
        return iter(self.layers)


class _OnnxParser:
    """Reads only the ONNX structure.  Node dispatch of onnx-tensorrt's ModelImporter.cpp
    (``parseNode``): a built-in importer, else the model-local function, else the plugin
    registry (``FallbackPluginImporter``: creator by op type, ``plugin_version`` and
    ``plugin_namespace``), else an error."""

    def __init__(self, trt, network):
        self._trt, self.network, self.errors = trt, network, []
        self.flags = 0
        trt.parsers.append(self)

    def set_flag(self, flag):
        self.flags |= 1 << int(flag)

    def clear_flag(self, flag):
        self.flags &= ~(1 << int(flag))

    @property
    def num_errors(self):
        return len(self.errors)

    def get_error(self, i):
        return self.errors[i]

    def parse_from_file(self, path):
        import onnx

        model = onnx.load(path, load_external_data=False)
        functions = {(f.domain, f.name) for f in model.functions}
        trt, net = self._trt, self.network
        for value in model.graph.input:
            dims = [d.dim_value if d.HasField("dim_value") else -1
                    for d in value.type.tensor_type.shape.dim]
            net.inputs.append(_Tensor(value.name, dims, trt.DataType.FLOAT))
        for node in model.graph.node:
            layer = self._import(node, functions)
            if layer is None:
                return False
            net.layers.append(layer)
        for value in model.graph.output:
            net.outputs.append(_Tensor(value.name, (-1,) * 4, trt.DataType.FLOAT))
        return True

    def _import(self, node, functions):
        trt = self._trt
        out = [_Tensor(o, (), trt.DataType.FLOAT) for o in node.output]
        if node.domain in ("", "ai.onnx"):
            return _ILayer(node.name, trt.LayerType.CONVOLUTION, out)
        if (node.domain, node.op_type) in functions:
            return _ILayer(f"{node.name}/MatMul", trt.LayerType.MATRIX_MULTIPLY, out)
        attrs = {a.name: a.s.decode() for a in node.attribute}
        key = (node.op_type, attrs.get("plugin_version", "1"), attrs.get("plugin_namespace", ""))
        if trt.registry.get_creator(*key) is None:
            self.errors.append(f"In node {node.name}: No importer registered for op: "
                               f"{node.op_type}. Attempted to import as plugin and failed.")
            return None
        return _ILayer(node.name, trt.LayerType.PLUGIN_V3, out, _PluginV3(trt, key))


# ---------------------------------------------------------------------------- builder
class _Profile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, min, opt, max):
        self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    def __bool__(self):  # IOptimizationProfile.__nonzero__ -> isValid
        return bool(self.shapes)


class _TimingCache:
    def serialize(self):
        return b""

    def combine(self, other, ignore_mismatch):
        return True


class _Config:
    def __init__(self):
        self.profiles, self.flags, self.pools = [], set(), {}
        self.profiling_verbosity = None
        self.builder_optimization_level = 3
        self.plugins_to_serialize = []
        self.DLA_core, self.default_device_type = -1, None
        self._cache = None

    num_optimization_profiles = property(lambda self: len(self.profiles))

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_flag(self, flag):
        self.flags.add(flag.name)

    def clear_flag(self, flag):
        self.flags.discard(flag.name)

    def get_flag(self, flag):
        return flag.name in self.flags

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool.name] = size

    def get_memory_pool_limit(self, pool):
        return self.pools.get(pool.name, 0)

    def create_timing_cache(self, data):
        return _TimingCache()

    def set_timing_cache(self, cache, ignore_mismatch):
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class _Builder:
    """build_serialized_network fails (None) for a network with a dynamic input and no
    optimization profile ("Network has dynamic or shape inputs, but no optimization profile has
    been defined", IBuilder::buildSerializedNetwork)."""

    def __init__(self, trt):
        self._trt = trt
        self.networks = []

    def create_network(self, flags=0):
        network = _Network(flags)
        self.networks.append(network)
        return network

    def create_builder_config(self):
        return _Config()

    def create_optimization_profile(self):
        return _Profile()

    def get_plugin_registry(self):
        return self._trt.registry

    def build_serialized_network(self, network, config):
        self._trt.calls.append(("build", network, config))
        dynamic = [t for t in network.inputs if any(d < 0 for d in t.shape)]
        if dynamic and not config.profiles:
            return None
        return b"serialized-engine"


# ---------------------------------------------------------------------------- runtime
class _Runtime:
    """deserialize_cuda_engine returns None for bytes it cannot read and for a plan whose
    plugin creator is not registered in the runtime's registry (pyCoreDoc.h)."""

    def __init__(self, trt, cudart, engines):
        self._trt, self._cudart, self._engines = trt, cudart, engines
        self.engine_host_code_allowed = False

    def get_plugin_registry(self):
        return self._trt.registry

    def deserialize_cuda_engine(self, data):
        spec = self._engines.get(bytes(data))
        if spec is None:
            return None
        if spec.needs_plugin and self._trt.registry.get_creator(
                "CrissCrossAttention", "1", "ccnet") is None:
            return None
        context = self._cudart.current_context()
        self._trt.calls.append(("deserialize", context))
        return _Engine(self._trt, self._cudart, spec, context)


class _Engine:
    """Its device resources live in the CUDA context current when it was deserialized."""

    def __init__(self, trt, cudart, spec, context):
        self._trt, self._cudart, self.spec, self.context = trt, cudart, spec, context
        self.num_optimization_profiles = 1
        self.profiling_verbosity = trt.ProfilingVerbosity.DETAILED

    def get_tensor_dtype(self, name):
        return self._trt.DataType.FLOAT

    def get_tensor_profile_shape(self, name, index):
        return self.spec.profile

    def create_execution_context(self):
        return _Context(self._trt, self._cudart, self)

    def create_engine_inspector(self):
        return _Inspector(self)


class _Context:
    """IExecutionContext: set_input_shape is False outside the active profile; the output
    shape is known once every input shape is set; enqueueV3 runs the enqueued work in the
    CUDA context current on the calling thread, so the engine and every tensor address must
    live there."""

    def __init__(self, trt, cudart, engine):
        self._trt, self._cudart, self.engine = trt, cudart, engine
        self.shapes, self.addresses = {}, {}
        self.profile = 0
        self.enqueues = []

    def set_optimization_profile_async(self, index, stream):
        self.profile = index
        return index < self.engine.num_optimization_profiles

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.spec.profile
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        spec = self.engine.spec
        if name == spec.input_name:
            return self.shapes.get(name, (-1, 3, -1, -1))
        n, _, h, w = self.shapes.get(spec.input_name, (-1, 3, -1, -1))
        return (n, spec.classes, h, w)

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def execute_async_v3(self, stream):
        spec = self.engine.spec
        context = self._cudart.current_context()
        if spec.input_name not in self.shapes or self.engine.context != context:
            return False
        for name in (spec.input_name, spec.output_name):
            owner = self._cudart.device.get(self.addresses.get(name), (None,))[0]
            if owner != context:
                return False
        self.enqueues.append((threading.get_ident(), context))
        self._cudart.record(int(stream), "enqueueV3")
        return True


class _Inspector:
    """IEngineInspector (NvInferRuntime.h, setExecutionContext): "Setting the execution
    context and specifying all the input shapes allows the inspector to calculate concrete
    dimensions for any dynamic shapes and display their format information.  Otherwise, values
    dependent on input shapes will be displayed as -1 and format information will not be
    shown."  Layer names and types come from the DETAILED plan."""

    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_engine_information(self, fmt):
        spec = self.engine.spec
        context = self.execution_context
        shapes_set = context is not None and spec.input_name in context.shapes
        layers = [("/backbone/conv1/Conv", "CaskConvolution")]
        layers += [(f"/decode_head/cca_{i}/CrissCrossAttention", "PluginV3")
                   for i in range(spec.plugin_layers)]
        info = []
        for name, kind in layers:
            output = {"Name": f"{name}_out", "Dimensions": [-1, 64, -1, -1]}
            if shapes_set:
                n, _, h, w = context.shapes[spec.input_name]
                output.update({"Dimensions": [n, 64, h // 8, w // 8],
                               "Format/Datatype": "Row major linear FP32"})
            info.append({"Name": name, "LayerType": kind, "Outputs": [output]})
        return json.dumps({"Layers": info})


# ============================================================================ pycuda
def make_pycuda(cudart: FakeCudaRuntime) -> Dict[str, types.ModuleType]:
    """``pycuda`` and ``pycuda.driver`` doubles (pycuda documentation): ``mem_alloc`` is the
    driver API's cuMemAlloc, in the thread's current context and failing without one
    (``pycuda.autoinit`` is PycudaAutoinitFinder's)."""
    driver = types.ModuleType("pycuda.driver")

    class DeviceAllocation(int):
        def free(self):
            cudart.device.pop(int(self), None)

    def mem_alloc(nbytes):  # cuMemAlloc: CUDA_ERROR_INVALID_CONTEXT without a current context
        if cudart.driver_context() is None:
            raise RuntimeError("cuMemAlloc failed: invalid device context")
        ptr = ctypes.c_void_p()
        cudart.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(nbytes))
        return DeviceAllocation(ptr.value)

    class Stream:
        handle = 0x77

        def synchronize(self):
            return None

    driver.mem_alloc, driver.Stream = mem_alloc, Stream
    driver.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    driver.memcpy_htod_async = lambda dst, src, stream=None: cudart.cudaMemcpyAsync(
        int(dst), src.ctypes.data, src.nbytes, 1)
    driver.memcpy_dtoh_async = lambda dst, src, stream=None: cudart.cudaMemcpyAsync(
        dst.ctypes.data, int(src), dst.nbytes, 2)
    package = types.ModuleType("pycuda")
    package.__path__, package.driver = [], driver
    return {"pycuda": package, "pycuda.driver": driver}


class PycudaAutoinitFinder:
    """Import hook for ``pycuda.autoinit``: executing it pushes a new context on the importing
    thread, as pycuda's autoinit does (``make_default_context``)."""

    def __init__(self, cudart: FakeCudaRuntime):
        self.cudart = cudart

    def find_spec(self, name, path=None, target=None):
        import importlib.util

        if name != "pycuda.autoinit":
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        module.context = "pycuda-context"
        self.cudart.push_context(module.context)


# ============================================================================ installing them
def _reset_polygraphy_tensorrt() -> None:
    """polygraphy imports tensorrt lazily and then keeps the module it got; forget it so the
    next use imports whatever ``sys.modules`` holds then (the double, or nothing)."""
    import sys

    for name, module in list(sys.modules.items()):
        lazy = getattr(module, "trt", None) if name.startswith("polygraphy") else None
        if lazy is not None and type(lazy).__name__ == "LazyModule":
            object.__setattr__(lazy, "module", None)


def install(monkeypatch, request, engines: Optional[Dict[bytes, EngineSpec]] = None,
            version: str = "10.16.0.1", pycuda: bool = False):
    """Put the doubles in place for one test: ``tensorrt`` in ``sys.modules`` and the CUDA
    runtime library behind ``polygraphy.cuda.wrapper()``.  Returns (trt double, cudart double)."""
    import sys

    import polygraphy.backend.trt.util as trt_util
    import polygraphy.cuda.cuda as polygraphy_cuda

    cudart = FakeCudaRuntime()
    trt = make_tensorrt(cudart, version, engines)
    wrapper = object.__new__(polygraphy_cuda.Cuda)
    wrapper.handle = cudart
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(polygraphy_cuda, "G_CUDA", wrapper)
    monkeypatch.setattr(trt_util, "TRT_LOGGER", None)
    if pycuda:
        for name, module in make_pycuda(cudart).items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setitem(sys.modules, "cuda", None)  # cuda-python absent
        monkeypatch.delitem(sys.modules, "pycuda.autoinit", raising=False)
        monkeypatch.setattr(sys, "meta_path", [PycudaAutoinitFinder(cudart)] + sys.meta_path)
    _reset_polygraphy_tensorrt()
    request.addfinalizer(_reset_polygraphy_tensorrt)
    return trt, cudart
