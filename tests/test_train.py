"""The training loop (smoke test: loss decreases, checkpoint reloads strictly) and ccnet-demo."""
import os

import numpy as np
import pytest
import torch

import ccnet
from ccnet.checkpoint import load_model, read_checkpoint
from ccnet.synthetic import CLASSES, PALETTE, make_scene, write_dataset
from ccnet.train import poly_lr, train
from cli.train import main
from ccnet.zoo import BUILTIN, custom_config


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("synth")), 2, seed=0, size=(64, 128))


@pytest.fixture(scope="module")
def tiny_train_config():
    return custom_config("tiny-train", depth=18, num_classes=len(CLASSES), channels=16,
                         aux_channels=8, base_channels=16, stem_channels=16,
                         dataset="synthetic", test_scale=(128, 64),
                         classes=CLASSES, palette=PALETTE)


def test_poly_lr_schedule():
    assert poly_lr(0.01, 0, 100) == pytest.approx(0.01)
    assert poly_lr(0.01, 100, 100) == pytest.approx(1e-4)
    lrs = [poly_lr(0.01, i, 100) for i in range(101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_training_smoke_loss_decreases_and_checkpoint_reloads(tmp_path, tiny_scenes,
                                                              tiny_train_config):
    out = str(tmp_path / "tiny.pth")
    # whole 64×128 scenes at a fixed scale: the net can fit them within a few steps
    result = train(tiny_train_config, tiny_scenes, out, iters=12, batch_size=2, lr=0.05,
                   crop=(64, 128), scale_range=(1.0, 1.0), seed=0, progress=False)
    losses = [h["loss"] for h in result["history"]]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses
    assert all("aux" in h for h in result["history"])  # the auxiliary loss is trained
    # mmseg layout, reloads strictly with the saved config, same weights
    state, meta = read_checkpoint(out)
    assert meta["dataset_meta"]["classes"] == tuple(CLASSES)
    assert meta["training"]["iters"] == 12
    model = load_model(out)
    assert model.config.channels == 16 and model.config.base_channels == 16
    assert model.config.test_scale == (128, 64)
    trained = result["model"].state_dict()
    assert all(torch.equal(trained[k], v) for k, v in model.state_dict().items())


def test_finetune_from_checkpoint_with_new_class_count(tmp_path, tiny_scenes, tiny_ckpt):
    out = str(tmp_path / "ft.pth")
    result = train(tiny_ckpt, tiny_scenes, out, iters=2, batch_size=1, crop=(64, 64),
                   num_classes=len(CLASSES), progress=False)
    assert len(result["history"]) == 2
    model = load_model(out)
    assert model.config.num_classes == len(CLASSES) and model.config.channels == 64


def test_cli_rejects_labels_beyond_the_class_count(tmp_path, tiny_scenes, tiny_ckpt, capsys):
    # the VOC-shaped tiny checkpoint has 21 classes: fine; a 4-class head is not
    out = str(tmp_path / "bad.pth")
    code = main(["--ckpt", tiny_ckpt, "--data", tiny_scenes, "--out", out, "--iters", "1",
                 "--crop", "64", "64", "--num-classes", "4", "--no-progress"])
    assert code == 2
    assert "pass --num-classes" in capsys.readouterr().err
    assert not os.path.exists(out)


def test_cli_missing_data_folder_is_one_line_error(tmp_path, capsys):
    code = main(["--config", "ccnet-demo", "--data", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "x.pth"), "--iters", "1", "--no-progress"])
    assert code == 2
    assert "dataset folder not found" in capsys.readouterr().err


def test_demo_model_is_builtin_and_segments_a_held_out_scene():
    assert "ccnet-demo" in BUILTIN
    config, path = BUILTIN["ccnet-demo"]
    assert os.path.isfile(path), f"{path} missing: see ccnet/weights/TRAINING.md"
    model = ccnet.load_model("ccnet-demo")
    assert model.meta.classes == tuple(CLASSES)
    # seeds >= 2_000_000 are never used for training (TRAINING.md: train seeds 0..N-1)
    image, labels = make_scene(2_000_123)
    pred = ccnet.predict(model, image).labels
    valid = labels != 255
    accuracy = float((pred[valid] == labels[valid]).mean())
    assert accuracy >= 0.8, f"pixel accuracy {accuracy:.3f} on a held-out scene"
