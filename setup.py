"""ccnet-deploy: CCNet (mmseg zoo) → ONNX → TensorRT with a criss-cross attention plugin."""
import re

from setuptools import setup

with open("ccnet/__init__.py") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

setup(
    name="ccnet-deploy",
    version=VERSION,
    description="ONNX/TensorRT deployment toolkit for mmsegmentation's CCNet models",
    python_requires=">=3.11",
    packages=["ccnet", "export", "calib", "runtime", "plugins", "cli"],
    package_data={
        "ccnet": ["data/*.json", "weights/*.pth", "weights/*.md"],
        "plugins": ["cca_op.json"],
    },
    install_requires=[
        "torch==2.13.0",  # the CPU wheel that installs offline on our machines
        "numpy>=1.26",
        "onnx>=1.17",
        "onnxscript>=0.5",
        "onnxconverter-common>=1.14",
        "opencv-python-headless>=4.8",
        "polygraphy>=0.49",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "pillow>=10",
    ],
    extras_require={
        # onnxruntime and onnxruntime-gpu share one import name: install exactly one of them.
        "cpu": ["onnxruntime>=1.20"],
        "gpu": ["onnxruntime-gpu>=1.20", "tensorrt>=10.0", "cuda-python>=12.0"],
        "test": ["pytest>=7"],
        # Triton through PyTriton (ships tritonserver; pins numpy<2) and its client/schema.
        "serve": ["nvidia-pytriton>=0.7", "tritonclient[http,grpc]>=2.50"],
        # ccnet batch: Ray Data's streaming map_batches with actor pools (compute= strategies).
        "batch": ["ray[data]>=2.51"],
    },
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
        ]
    },
)
