"""Shared test helpers: where the real photos are, and small models written by our own code."""
from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("CCNET_SHARED_DATA",
                             os.path.join(os.path.dirname(REPO), "shared", "data"))
VOC_DIR = os.path.join(SHARED_DATA, "voc_samples", "deeplabv3plus_pytorch")
ADE_DIR = os.path.join(SHARED_DATA, "ade20k_samples")


def real_photos():
    """Paths of the real photos in the shared data folder (VOC + ADE20K)."""
    from ccnet.images import iter_images

    photos = list(iter_images(os.path.join(VOC_DIR, "images")))
    photos += list(iter_images(os.path.join(ADE_DIR, "images")))
    return photos


def first_photo():
    """One real photo (path), or None when the shared data folder is absent."""
    photos = real_photos() if os.path.isdir(SHARED_DATA) else []
    return photos[0] if photos else None


def randomize_model(model, seed: int = 0):
    """Give a fresh CCNet non-trivial weights: random BN statistics and a non-zero CCA gamma
    (a fresh CCA has gamma=0 and would be the identity, hiding the attention from tests)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
                module.bias.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
        model.decode_head.cca.gamma.scale.fill_(0.7)
    return model.eval()


def make_checkpoint(path, config, seed: int = 0):
    """Write a randomly initialised CCNet for ``config`` in mmseg's layout; returns the model."""
    import torch

    from ccnet.checkpoint import build_model, save_checkpoint

    torch.manual_seed(seed)
    model = randomize_model(build_model(config), seed)
    save_checkpoint(model, str(path))
    return model


def export_tiny_onnx(tmp_path_factory, ckpt: str, name: str = "tiny.onnx", **kwargs) -> str:
    """Export a checkpoint once per session (cached by file name under pytest's base temp)."""
    from export.to_onnx import export_onnx

    folder = tmp_path_factory.getbasetemp() / "runtime_onnx"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if not path.exists():
        export_onnx(ckpt, str(path), verify=False, log=lambda *a: None, **kwargs)
    return str(path)


def error_line(err: str) -> str:
    """The one `error: ...` line a CLI printed on stderr (asserts it is the only line)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def one_error_line(capsys) -> str:
    """The one `error: ...` line captured on stderr so far."""
    return error_line(capsys.readouterr().err)


def with_label_head(logits_path: str, out_path: str, align_corners=None) -> str:
    """Write ``logits_path`` with the label head appended (optionally another align_corners)."""
    import onnx

    from export.label_head import add_label_head, with_head_metadata
    from export.metadata import read_metadata, set_metadata

    model = onnx.load(logits_path)
    meta = read_metadata(model)
    if align_corners is not None:
        meta = meta.replace(align_corners=align_corners)
    head = add_label_head(model, meta)
    set_metadata(head, with_head_metadata(meta))
    onnx.save(head, out_path)
    return out_path


def write_video(path: str, frames, fps: float) -> None:
    """Write BGR ``frames`` (all of the first one's size) as an mp4v clip, one frame at a time:
    a long generator is never held in memory."""
    import cv2

    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_video needs at least one frame")
    h, w = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened(), f"OpenCV cannot write mp4v to {path}"
    writer.write(first)
    for frame in frames:
        writer.write(frame)
    writer.release()


def damage_frames(data: bytes, frames) -> bytes:
    """The mp4v stream with the start codes of ``frames`` destroyed: exactly those frames fail
    to decode, the decoder resumes at the next one."""
    out, position, index = bytearray(data), -1, -1
    while True:
        position = out.find(b"\x00\x00\x01\xb6", position + 1)  # MPEG-4 VOP start code
        if position < 0:
            return bytes(out)
        index += 1
        if index in frames:
            out[position:position + 4] = b"\xff" * 4
