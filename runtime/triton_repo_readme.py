"""The README written into an exported Triton repository: what the models are, how to start
NVIDIA's server container on it (with the plugin library for engines), and how to call it."""
from __future__ import annotations

from .serving_contract import labels_type_name
from .triton_network import PLUGIN_FILE, TENSORRT_PLATFORM, NetworkSpec

CONTAINER = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"


def _server_command(network: str, spec: NetworkSpec, has_plugin: bool) -> str:
    plugin = f"/models/{network}/{PLUGIN_FILE}"
    flags = [f"--backend-config=tensorrt,plugins={plugin}"] if (
        spec.platform == TENSORRT_PLATFORM and (has_plugin or spec.needs_plugin)) else []
    return " \\\n          ".join(["tritonserver --model-repository=/models"] + flags)


def _engine_section(network: str, spec: NetworkSpec, has_plugin: bool) -> str:
    if spec.platform != TENSORRT_PLATFORM:
        return ""
    plugin = (f"`{network}/{PLUGIN_FILE}` (copied here by `ccnet triton-repo --plugin`)"
              if has_plugin else f"`{PLUGIN_FILE}` (not copied: rerun `ccnet triton-repo` "
              f"with `--plugin build/{PLUGIN_FILE}`, or copy it to `{network}/`)")
    return f"""
## TensorRT engine and plugin

`{network}/1/model.plan` runs on the TensorRT backend. An engine only loads on the TensorRT
version that built it (see the engine's side file, `tensorrt_version`): pick the container
release with that TensorRT version in NVIDIA's framework support matrix, and the same GPU
architecture.

Its criss-cross attention layers are our TensorRT plugin, {plugin}. Triton must load it before
the engine: either with the TensorRT backend option (as in the command above)

    --backend-config=tensorrt,plugins=/models/{network}/{PLUGIN_FILE}

(several libraries: separate them with `;`), or with `LD_PRELOAD=/models/{network}/{PLUGIN_FILE}
tritonserver ...`. The library must be built against the container's TensorRT and CUDA.
"""


def repository_readme(name: str, network: str, spec: NetworkSpec, max_batch_size: int,
                      has_plugin: bool) -> str:
    """README.md for ``<repo>/<name>/``."""
    labels = labels_type_name(spec.meta.num_classes)
    batched = max_batch_size > 0
    batch_dim = "[N, H, W, 3]" if batched else "[H, W, 3]"
    shape, data, first = (("[1, *image.shape]", "image[None]", "[0]") if batched
                          else ("list(image.shape)", "image", ""))
    return f"""# Triton repository for ccnet model `{spec.meta.name}` ({spec.meta.dataset})

Written by `ccnet triton-repo`. Models:

- `{name}`: what clients call (Python backend). Input `image` UINT8 {batch_dim} (decoded BGR
  pixels) or `encoded` BYTES (a JPEG/PNG file, decoded server-side); output `labels` {labels}
  at the input image size ({spec.meta.num_classes} classes). It runs ccnet's pre- and
  post-processing (`ccnet.processing`, as `ccnet serve` and `runtime.Segmenter` do) and calls
  `{network}` for each network pass. Bad requests get a one-line error.
- `{network}`: `{spec.platform}`, input `{spec.input_name}` {spec.input_type[5:]}, output
  `{spec.output_name}` {spec.output_type[5:]} logits, max batch size {spec.max_batch_size}.

## Start the server (NGC container)

The Python model imports ccnet-deploy, so mount a checkout of it and put it on `PYTHONPATH`
(it needs numpy and opencv-python-headless in the container's Python; no PyTorch):

    docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
      -v $PWD/<this repository>:/models -v <ccnet-deploy checkout>:/opt/ccnet-deploy \\
      -e PYTHONPATH=/opt/ccnet-deploy {CONTAINER} \\
      bash -c "pip install -q opencv-python-headless && \\
        {_server_command(network, spec, has_plugin)}"

(`--gpus all` is needed for TensorRT engines; ONNX Runtime falls back to the CPU without it.)
{_engine_section(network, spec, has_plugin)}
## Call it

    import cv2, tritonclient.http as http
    image = cv2.imread("photo.jpg")
    client = http.InferenceServerClient("localhost:8000")
    tensor = http.InferInput("image", {shape}, "UINT8")
    tensor.set_data_from_numpy({data})
    labels = client.infer("{name}", [tensor]).as_numpy("labels"){first}
"""
