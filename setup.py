"""ccnet-deploy: CCNet (mmseg zoo) → ONNX → TensorRT with a criss-cross attention plugin.

Install profiles (docs/cli.md):
    pip install ccnet-deploy                # torch-free runtime core (bring a backend: [ort]...)
    pip install "ccnet-deploy[ort]"         # + ONNX Runtime (CPU): run .onnx files
    pip install "ccnet-deploy[trt]"         # + TensorRT, polygraphy, onnx: engines
    pip install "ccnet-deploy[export,ort]"  # + PyTorch & co: export, FP16, INT8, parity, train
"""
import re

from setuptools import setup

with open("ccnet/__init__.py") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

# What `import runtime` + Segmenter + the video pipeline + eval need: no torch, no onnx.
CORE = [
    "numpy>=1.24",
    "opencv-python-headless>=4.8",
    "pillow>=9.0",  # dataset labels are read as mmseg reads them (palette PNGs)
    "tqdm>=4.60",
]

EXTRAS = {
    # onnxruntime and onnxruntime-gpu share one import name: install exactly one of them.
    "ort": ["onnxruntime>=1.20"],
    "ort-gpu": ["onnxruntime-gpu>=1.20"],
    # onnx: the engine builder reads the model metadata from the ONNX file.  Device memory,
    # copies and streams go through polygraphy.cuda, which loads the CUDA runtime that
    # TensorRT's wheels bring (nvidia-cuda-runtime).
    "trt": ["tensorrt>=10.0", "polygraphy>=0.49", "onnx>=1.17"],
    # Export, FP16/INT8 conversion, parity against PyTorch, training.  They also run ONNX
    # Runtime (verification, calibration): combine with [ort] or [ort-gpu].  torch: 2.6 is the
    # first release with the exporter API we call; CI tests the upper end of the range.
    "export": [
        "torch>=2.6,<2.14",
        "onnx>=1.17",
        "onnxscript>=0.5",
        "onnxconverter-common>=1.14",
        "matplotlib>=3.7",  # parity plots
    ],
    # Triton through PyTriton (ships tritonserver; pins numpy<2) and its client/schema.
    "serve": ["nvidia-pytriton>=0.7", "tritonclient[http,grpc]>=2.50"],
    # ccnet batch: Ray Data's streaming map_batches with actor pools (compute= strategies);
    # runtime/batch.py builds its result tables with pyarrow itself.
    "batch": ["ray[data]>=2.51", "pyarrow"],
    # polygraphy: the TensorRT layer's tests drive our code on polygraphy's real loaders (with
    # TensorRT doubles), so they run wherever pip works, TensorRT or not.
    "test": ["pytest>=7", "vermin>=1.6", "polygraphy>=0.49"],
}
# Everything that installs side by side (not ort-gpu, which replaces ort).
# PyTriton needs numpy<2 and pyarrow 26 (through Ray Data) numpy>=2: together they need an
# older pyarrow.
EXTRAS["all"] = sorted({req for name in ("ort", "trt", "export", "serve", "batch", "test")
                        for req in EXTRAS[name]} | {"pyarrow<26"})
# Older names of two profiles, kept so existing install commands keep working.
EXTRAS["cpu"] = EXTRAS["ort"]
EXTRAS["gpu"] = EXTRAS["ort-gpu"] + EXTRAS["trt"]

setup(
    name="ccnet-deploy",
    version=VERSION,
    description="ONNX/TensorRT deployment toolkit for mmsegmentation's CCNet models",
    python_requires=">=3.10",
    packages=["ccnet", "export", "calib", "runtime", "plugins", "cli"],
    package_data={
        "ccnet": ["data/*.json", "weights/*.pth", "weights/*.md"],
        "plugins": ["cca_op.json"],
    },
    install_requires=CORE,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": [
            "ccnet=cli.main:main",
            "ccnet-predict=cli.predict:main",
            "ccnet-eval=cli.eval:main",
            "ccnet-train=cli.train:main",
            "ccnet-export=cli.export:main",
            "ccnet-to-fp16=cli.fp16:main",
            "ccnet-calibrate=cli.calibrate:main",
            "ccnet-parity=cli.parity:main",
            "ccnet-build=cli.build:main",
            "ccnet-inspect=cli.inspect:main",
            "ccnet-video=cli.video:main",
            "ccnet-serve=cli.serve:main",
            "ccnet-triton-repo=cli.triton_repo:main",
            "ccnet-batch=cli.batch:main",
            "ccnet-zoo=cli.zoo:main",
            "ccnet-deploy=cli.deploy:main",
            "ccnet-bench=cli.bench:main",
        ]
    },
)
