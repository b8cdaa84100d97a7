"""``ccnet triton-repo``: a Triton model repository for NVIDIA's server containers.

Two models, so clients send images and get label maps exactly as from ``ccnet serve``:

- ``<name>``: Python backend (``runtime.triton_python_model``): decodes/validates the request
  (``runtime.serving_contract``), runs the shared ``ccnet.processing`` pre/post-processing and
  calls the network through Triton's BLS API once per network pass (slide windows included);
- ``<name>_network``: ``tensorrt_plan`` (an engine, with our plugin library loaded by the
  server) or ``onnxruntime_onnx`` (an exported ONNX): batch in, logits out.

Every ``config.pbtxt`` is built as Triton's own ``ModelConfig`` protobuf message (the schema
ships in tritonclient) and parsed back before anything is written; the models appear in the
repository together or not at all.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ccnet.errors import CCNetError, first_line
from ccnet.files import require_file

from .serving_contract import (DEFAULT_MAX_IMAGE_SIDE, ENCODED, IMAGE, LABELS, LOGITS,
                               labels_type_name)
from .triton_network import (PLUGIN_FILE, TENSORRT_PLATFORM, NetworkSpec, network_spec,
                             plugin_note)

PYTHON_MODEL_MODULE = "runtime.triton_python_model"
TRITONCLIENT_HINT = "pip install 'ccnet-deploy[serve]' (tritonclient carries Triton's schema)"


def model_config_pb2():
    """Triton's ModelConfig protobuf module (from tritonclient[grpc])."""
    try:
        from tritonclient.grpc import model_config_pb2 as pb2
    except ImportError as e:
        raise CCNetError(f"Triton's ModelConfig schema is not importable ({first_line(e)}): "
                         f"{TRITONCLIENT_HINT}") from None
    return pb2


def parse_config(text: str, where: str = "config.pbtxt"):
    """Parse config.pbtxt text with Triton's ModelConfig schema; one-line error if invalid."""
    pb2 = model_config_pb2()  # first: without tritonclient, its install hint
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as e:
        raise CCNetError(f"{where} does not follow Triton's ModelConfig schema: "
                         f"{first_line(e)}") from None


def render_config(config, comments: Tuple[str, ...] = ()) -> str:
    """config.pbtxt text (``#`` comment lines first), checked by parsing it back."""
    from google.protobuf import text_format

    header = "".join(f"# {line}\n" for line in comments)
    text = header + text_format.MessageToString(config)
    if parse_config(text, f"{config.name}/config.pbtxt") != config:
        raise CCNetError(f"{config.name}/config.pbtxt does not round-trip through Triton's schema")
    return text


def _tensor(pb2, message, name: str, type_name: str, dims, optional: bool = False):
    tensor = message.add()
    tensor.name, tensor.data_type = name, pb2.DataType.Value(type_name)
    tensor.dims.extend(int(d) for d in dims)
    if optional:
        tensor.optional = True
    return tensor


def network_config(name: str, spec: NetworkSpec, instances: int):
    """The ``<name>_network`` ModelConfig."""
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=name, platform=spec.platform,
                             max_batch_size=spec.max_batch_size,
                             default_model_filename=spec.file_name)
    _tensor(pb2, config.input, spec.input_name, spec.input_type, spec.input_dims)
    _tensor(pb2, config.output, spec.output_name, spec.output_type, spec.output_dims)
    group = config.instance_group.add(count=instances)
    if spec.platform == TENSORRT_PLATFORM:
        group.kind = pb2.ModelInstanceGroup.Kind.KIND_GPU
    if spec.max_batch_size > 0:
        config.dynamic_batching.SetInParent()  # concurrent same-size passes share a batch
    return config


def python_model_config(name: str, num_classes: int, max_batch_size: int, instances: int,
                        parameters: Dict[str, str], logits: bool = False,
                        batch_delay_us: int = 0):
    """The ModelConfig of a Python-backend model with the client tensor contract
    (``runtime.serving_contract``): optional ``image``/``encoded`` in, ``labels`` (and
    ``logits`` when asked) out."""
    pb2 = model_config_pb2()
    config = pb2.ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    _tensor(pb2, config.input, IMAGE, "TYPE_UINT8", [-1, -1, 3], optional=True)
    _tensor(pb2, config.input, ENCODED, "TYPE_STRING", [1], optional=True)
    _tensor(pb2, config.output, LABELS, f"TYPE_{labels_type_name(num_classes)}", [-1, -1])
    if logits:
        _tensor(pb2, config.output, LOGITS, "TYPE_FP32", [num_classes, -1, -1])
    config.instance_group.add(count=instances, kind=pb2.ModelInstanceGroup.Kind.KIND_CPU)
    if max_batch_size > 0:
        config.dynamic_batching.SetInParent()
        if batch_delay_us:
            config.dynamic_batching.max_queue_delay_microseconds = batch_delay_us
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return config


def pipeline_config(name: str, network: str, spec: NetworkSpec, max_batch_size: int,
                    instances: int, max_image_side: int):
    """The ``<name>`` ModelConfig: the Python-backend model clients call."""
    return python_model_config(
        name, spec.meta.num_classes, max_batch_size, instances,
        {"ccnet_meta": spec.meta.to_json(), "network_model": network,
         "network_input": spec.input_name, "network_output": spec.output_name,
         "network_input_type": spec.input_type, "max_image_side": str(max_image_side)})


@dataclass
class RepoReport:
    """What ``write_triton_repo`` wrote."""

    repo: str
    models: List[str]
    platform: str
    max_batch_size: int
    network_batch: int
    notes: List[str] = field(default_factory=list)


def check_model_name(name: str) -> str:
    """A Triton model name: letters, digits, dots, underscores and dashes."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name or ""):
        raise CCNetError(f"model name {name!r} is not usable by Triton: use letters, digits, "
                         "'.', '_' and '-'")
    return name


def python_model_source(module: str) -> str:
    """The ``1/model.py`` of a Python-backend model whose code is ``module``."""
    return (f'"""Triton Python-backend entry point of a ccnet model: the code is '
            f'{module}\n(ccnet-deploy must be importable by the server\'s Python)."""\n'
            f"from {module} import TritonPythonModel  # noqa: F401\n")


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_python_model(folder: str, config_text: str, module: str = PYTHON_MODEL_MODULE) -> None:
    """Write the Python-backend model ``folder`` (a new folder): its ``config.pbtxt`` and the
    ``1/model.py`` whose code is ``module``."""
    os.makedirs(os.path.join(folder, "1"))
    _write_text(os.path.join(folder, "config.pbtxt"), config_text)
    _write_text(os.path.join(folder, "1", "model.py"), python_model_source(module))


def _stage(staging: str, name: str, network: str, spec: NetworkSpec, model_file: str,
           texts: Dict[str, str], plugin: Optional[str], readme: str) -> None:
    """Write both model folders under ``staging``."""
    write_python_model(os.path.join(staging, name), texts[name])
    _write_text(os.path.join(staging, name, "README.md"), readme)
    os.makedirs(os.path.join(staging, network, "1"))
    _write_text(os.path.join(staging, network, "config.pbtxt"), texts[network])
    shutil.copyfile(model_file, os.path.join(staging, network, "1", spec.file_name))
    if plugin:
        shutil.copyfile(plugin, os.path.join(staging, network, PLUGIN_FILE))


def _publish(staging: str, repo: str, models: List[str]) -> None:
    """Move the staged model folders into the repository (same filesystem: renames)."""
    moved = []
    try:
        for model in models:
            os.rename(os.path.join(staging, model), os.path.join(repo, model))
            moved.append(model)
    except OSError as e:
        for model in moved:
            shutil.rmtree(os.path.join(repo, model), ignore_errors=True)
        raise CCNetError(f"cannot write into {repo}: {e.strerror}") from None


def _prepare_repo(repo: str, models: List[str]) -> None:
    try:
        os.makedirs(repo, exist_ok=True)
    except OSError as e:
        raise CCNetError(f"cannot create repository folder {repo}: {e.strerror}") from None
    taken = [m for m in models if os.path.exists(os.path.join(repo, m))]
    if taken:
        raise CCNetError(f"{repo} already has model folder(s) {', '.join(taken)}: remove them or "
                         "pick another --name")


def write_triton_repo(model_file: str, repo: str, name: str = "ccnet", max_batch_size: int = 4,
                      instances: int = 1, plugin: Optional[str] = None,
                      max_image_side: int = DEFAULT_MAX_IMAGE_SIDE) -> RepoReport:
    """Write ``<repo>/<name>`` (Python pre/post-processing) and ``<repo>/<name>_network``
    (the network) for ``model_file`` (.onnx or .engine with its side file).  Existing model
    folders are never replaced; nothing is left behind on failure."""
    from .triton_repo_readme import repository_readme

    require_file(model_file, "model file")
    if max_batch_size < 0 or instances < 1:
        raise CCNetError("--max-batch-size must be >= 0 and --instances >= 1")
    network = f"{check_model_name(name)}_network"
    if plugin:
        plugin = require_file(plugin, "plugin library")
    spec = network_spec(model_file, max_batch_size)
    if plugin and spec.platform != TENSORRT_PLATFORM:
        raise CCNetError("--plugin is for TensorRT engines: ONNX Runtime runs the ONNX "
                         "function form without it")
    note = plugin_note(spec, plugin)
    texts = {network: render_config(network_config(network, spec, instances),
                                    (note,) if note else ()),
             name: render_config(pipeline_config(name, network, spec, max_batch_size, instances,
                                                 max_image_side),
                                 (f"ccnet model {spec.meta.name}: clients call this model; "
                                  f"it runs {network} through BLS",))}
    _prepare_repo(repo, [name, network])
    report = RepoReport(os.path.abspath(repo), [name, network], spec.platform, max_batch_size,
                        spec.max_batch_size, notes=list(spec.notes) + ([note] if note else []))
    staging = tempfile.mkdtemp(prefix=".tmp-ccnet-", dir=repo)
    try:
        readme = repository_readme(name, network, spec, max_batch_size, bool(plugin))
        _stage(staging, name, network, spec, model_file, texts, plugin, readme)
        _publish(staging, repo, [name, network])
    except OSError as e:
        raise CCNetError(f"cannot write the repository in {repo}: {e.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report
