"""ccnet batch with GPU workers (marker ``gpu``; needs CUDA PyTorch and Ray Data): each worker asks
Ray for ``num_gpus`` and opens the model on the GPU Ray gave it (CUDA_VISIBLE_DEVICES).

The built-in ccnet-demo checkpoint on PyTorch CUDA stands in for a TensorRT engine: the resource
request and placement are the same for both backends."""
from __future__ import annotations

import os

import cv2
import pytest

pytestmark = pytest.mark.gpu

IMAGES = 12


@pytest.fixture(scope="module")
def ray_gpu():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ray = pytest.importorskip("ray", reason="ccnet batch needs Ray Data: pip install '.[batch]'")
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, object_store_memory=2**30,
             log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from ccnet.synthetic import make_scene

    folder = tmp_path_factory.mktemp("scenes")
    for seed in range(IMAGES):
        cv2.imwrite(str(folder / f"scene{seed:02d}.jpg"), make_scene(seed, (256, 512))[0])
    return str(folder)


def _settings(**kwargs):
    from runtime.batch import BatchSettings

    return BatchSettings(progress=False, runner_options={"device": "cuda"}, **kwargs)


def test_gpu_worker_matches_the_in_process_cuda_segmenter(ray_gpu, scenes, tmp_path):
    from ccnet.images import load_image
    from runtime.batch import run_batch
    from runtime.segmenter import Segmenter

    summary = run_batch("ccnet-demo", scenes, str(tmp_path), _settings(workers=1))
    assert (summary["written"], summary["failed"]) == (IMAGES, 0)
    assert summary["gpus_per_worker"] == 1.0 and summary["backend"] == "pytorch"
    agree = total = 0
    with Segmenter("ccnet-demo", device="cuda") as segmenter:
        for name in sorted(os.listdir(scenes)):
            want = segmenter.segment(load_image(os.path.join(scenes, name)))
            got = cv2.imread(str(tmp_path / (name[:-4] + ".png")), cv2.IMREAD_UNCHANGED)
            agree += int((got == want).sum())
            total += want.size
    # cuDNN may pick other convolution algorithms in another process: near-ties can flip.
    assert agree / total > 0.999


def test_two_workers_share_one_gpu(ray_gpu, scenes, tmp_path):
    from runtime.batch import run_batch

    summary = run_batch("ccnet-demo", scenes, str(tmp_path),
                        _settings(workers=2, gpus_per_worker=0.5))
    assert (summary["written"], summary["workers"]) == (IMAGES, 2)


def test_more_gpus_than_the_cluster_has_is_refused(ray_gpu, scenes, tmp_path):
    from ccnet.errors import CCNetError
    from runtime.batch import run_batch

    with pytest.raises(CCNetError, match="needs 2 GPU"):
        run_batch("ccnet-demo", scenes, str(tmp_path / "out"), _settings(gpus_per_worker=2))
    assert not os.path.exists(tmp_path / "out")
