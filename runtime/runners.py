"""The ONNX Runtime runner (``ccnet.runner.Runner``): an exported CCNet ONNX file behind
``infer(batch)``.  The PyTorch runner is ``ccnet.inference.TorchRunner``, the TensorRT runner
lives in ``trt_runner.py``."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.files import require_file
from ccnet.labels import LABEL_HEAD_INPUT, label_head_feed
from ccnet.meta import METADATA_KEY, ModelMeta
from ccnet.runner import Runner


class OrtRunner(Runner):
    """ONNX Runtime session over an exported CCNet ONNX file.

    ``device``: "cpu"; "cuda" (CUDAExecutionProvider); "tensorrt" (TensorrtExecutionProvider);
    "auto" = CUDA when onnxruntime-gpu offers it, else CPU.  ``providers`` overrides the choice
    with an explicit ORT provider list.

    On every provider the CrissCrossAttention nodes run their ONNX function body (standard ops):
    ONNX Runtime inlines the model-local function, and its TensorRT provider could not use our
    plugin anyway -- it loads only IPluginV2 creators, as ops of domain ``trt.plugins``, from
    ``trt_extra_plugin_lib_paths``, while ours is an IPluginV3 in domain ``ccnet``.  The plugin
    runs in engines built by ``ccnet build``; ``plugins`` is refused with that explanation.

    ``spin_wait=False`` makes ONNX Runtime's idle pool threads sleep instead of spinning between
    operators: slightly slower alone, but it leaves the cores to the threads that decode,
    post-process and encode beside the network in a pipeline (``ccnet video``).

    ``check_checksum`` compares the file with the checksum recorded when it was written
    (``export.metadata``; one parse of the file, ~2 s for an R50-D8 on a small CPU) so a
    corrupted file is refused instead of run.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str, device: str = "auto", threads: Optional[int] = None,
                 graph_optimization: str = "all", providers: Optional[Sequence] = None,
                 plugins: Optional[str] = None, check_checksum: bool = True,
                 spin_wait: bool = True):
        if plugins:
            raise CCNetError("--plugins applies to TensorRT engines: ONNX Runtime runs the "
                             "CrissCrossAttention nodes' ONNX function, never the plugin (build an "
                             "engine with ccnet build to use it)")
        try:
            import onnxruntime as ort
        except ImportError:
            raise CCNetError("onnxruntime is not installed: pip install onnxruntime (CPU) or "
                             "onnxruntime-gpu (never both)") from None
        self.path = require_file(model_path, "ONNX model")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        if not spin_wait:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if graph_optimization not in levels:
            raise CCNetError(f"unknown graph optimization level {graph_optimization!r}: use one "
                             f"of {', '.join(levels)}")
        options.graph_optimization_level = levels[graph_optimization]
        self.providers = list(providers) if providers else self._providers(ort, device)
        try:
            self.session = ort.InferenceSession(model_path, sess_options=options,
                                                providers=self.providers)
        except Exception as e:  # ORT raises Fail/InvalidGraph/InvalidProtobuf/NotImplemented
            text = first_line(e)
            if "CrissCrossAttention" in text and ("not a registered" in text
                                                   or "No opset import" in text
                                                   or "not implemented" in text.lower()):
                raise CCNetError(
                    f"{model_path} is the plugin form (CrissCrossAttention nodes without their "
                    "ONNX function): only TensorRT with libccnet_plugins.so runs it; export "
                    "with the function (ccnet-export default) to run on ONNX Runtime") from None
            raise CCNetError(f"cannot load ONNX model {model_path}: {text}") from None
        outputs = self.session.get_outputs()
        inputs = [i for i in self.session.get_inputs() if i.name != LABEL_HEAD_INPUT]
        self.label_head = len(inputs) < len(self.session.get_inputs())
        if len(inputs) != 1 or not outputs or len(inputs[0].shape) != 4:
            raise CCNetError(f"{model_path} has {len(inputs)} input(s) and {len(outputs)} "
                             "output(s), not one N×3×H×W image input and an output: pass a model "
                             "written by ccnet-export")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        self.output_name = outputs[0].name
        try:
            custom = self.session.get_modelmeta().custom_metadata_map or {}
        except UnicodeDecodeError:  # protobuf strings must be UTF-8: a damaged file
            raise CCNetError(f"{model_path} is corrupt: its metadata is not valid UTF-8 text; "
                             "export or copy it again") from None
        if METADATA_KEY in custom and check_checksum:
            _verify_checksum(model_path)  # first: damage is reported as such
        meta = ModelMeta.from_json(custom[METADATA_KEY]) if METADATA_KEY in custom else None
        kind = "labels" if outputs[0].name == "labels" or "int" in outputs[0].type else "logits"
        super().__init__(meta, "label_map" if self.label_head else kind)

    @staticmethod
    def _providers(ort, device: str):
        available = ort.get_available_providers()
        if device == "cpu":
            return ["CPUExecutionProvider"]
        if device == "auto":
            return (["CUDAExecutionProvider", "CPUExecutionProvider"]
                    if "CUDAExecutionProvider" in available else ["CPUExecutionProvider"])
        wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
        if device not in wanted:
            raise CCNetError(f"unknown device {device!r}: use auto, cpu, cuda or tensorrt")
        if wanted[device] not in available:
            raise CCNetError(f"{wanted[device]} is not available in this onnxruntime "
                             f"({', '.join(available)}): pip install onnxruntime-gpu "
                             "(after uninstalling onnxruntime)")
        if device == "cuda":
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.label_head:
            raise CCNetError(f"{self.path} has a label head: call infer_labels(batch, (H, W))")
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        out = self._run({self.input_name: batch})
        return out.astype(np.float32, copy=False) if self.output_kind == "logits" else out

    def infer_labels(self, batch: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
        if not self.label_head:
            return super().infer_labels(batch, size)
        batch = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return self._run({self.input_name: batch, LABEL_HEAD_INPUT: label_head_feed(size)})

    def _run(self, feed: dict) -> np.ndarray:
        try:
            return self.session.run([self.output_name], feed)[0]
        except Exception as e:  # ORT's Fail/InvalidArgument/RuntimeException: one line
            shape = tuple(feed[self.input_name].shape)
            raise CCNetError(f"ONNX Runtime failed to run {self.path} on input {shape}: "
                             f"{first_line(e)}") from None

    def release(self) -> None:
        self.session = None


def _verify_checksum(path: str) -> None:
    """The file's checksum check, where the onnx package is installed (a runtime-only box may
    have ONNX Runtime alone; it then runs the file unchecked)."""
    try:
        from export.metadata import verify_file
    except ImportError:
        return
    verify_file(path)
