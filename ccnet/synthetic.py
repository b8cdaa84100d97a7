"""Procedural street-like scenes with pixel labels, for training and testing small CCNets.

Our own generator (numpy + cv2 only, torch-free): a perspective road with lane marks, sidewalks
with tiles and curbs, buildings with windows, trees and hedges, sky with clouds, cars, people and
poles with signs, under random lighting (brightness, contrast, colour cast, gradients, shadows,
noise, blur).  Everything is drawn from ``numpy.random.default_rng(seed)``, so a seed gives the
same scene on every machine.  Labels are class indices (``CLASSES``), 255 = ignore (a thin band
around small objects' outlines is left unlabelled when ``ignore_border`` > 0).
"""
from __future__ import annotations

import os
from typing import Optional, Tuple

import cv2
import numpy as np

from .demo import DEMO_CLASSES as CLASSES, DEMO_PALETTE as PALETTE
from .errors import CCNetError
from .files import write_image
from .meta import IGNORE_INDEX

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(CLASSES))
DEFAULT_SIZE = (256, 512)  # (height, width)


class _Canvas:
    """An image (float32 BGR, 0..255) and its label map, painted together."""

    def __init__(self, height: int, width: int, rng: np.random.Generator):
        self.h, self.w, self.rng = height, width, rng
        self.image = np.zeros((height, width, 3), np.float32)
        self.labels = np.full((height, width), IGNORE_INDEX, np.uint8)

    def paint(self, mask: np.ndarray, label: int, color, texture: Optional[np.ndarray] = None):
        """Fill ``mask`` with ``color`` (+ a texture H×W or H×W×3 added on top) and ``label``."""
        m = mask.astype(bool)
        fill = np.broadcast_to(np.asarray(color, np.float32), (self.h, self.w, 3))
        if texture is not None:
            fill = fill + (texture[..., None] if texture.ndim == 2 else texture)
        self.image[m] = fill[m]
        self.labels[m] = label

    def mask(self) -> np.ndarray:
        return np.zeros((self.h, self.w), np.uint8)

    def noise(self, scale: float, cell: int) -> np.ndarray:
        """Smooth value noise (std ~ ``scale``) with blobs of about ``cell`` pixels."""
        gh, gw = max(2, self.h // cell + 2), max(2, self.w // cell + 2)
        grid = self.rng.standard_normal((gh, gw)).astype(np.float32)
        return cv2.resize(grid, (self.w, self.h), interpolation=cv2.INTER_CUBIC) * scale


def _jitter(rng, color, amount: float = 18.0):
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255)


def _bgr(rgb):
    return np.asarray(rgb, np.float32)[::-1]


# ----------------------------------------------------------------------------- scene parts
def _sky(c: _Canvas, horizon: int):
    rng = c.rng
    kind = rng.integers(3)
    top, bottom = [((150, 95, 40), (235, 200, 150)),        # blue day (BGR)
                   ((150, 150, 150), (205, 205, 200)),      # overcast
                   ((120, 70, 90), (110, 170, 240))][kind]  # dusk
    t = np.linspace(0, 1, c.h, dtype=np.float32)[:, None, None] * np.ones((1, c.w, 1), np.float32)
    grad = (1 - t) * _jitter(rng, top, 12) + t * _jitter(rng, bottom, 12)
    clouds = np.clip(c.noise(1.0, int(rng.integers(24, 64))) - 0.3, 0, None) * rng.uniform(20, 70)
    m = c.mask()
    m[:horizon + 2] = 1
    c.paint(m, SKY, 0, grad + clouds[..., None])


def _buildings(c: _Canvas, horizon: int):
    rng = c.rng
    x = int(rng.integers(-40, 0))
    while x < c.w:
        bw = int(rng.integers(c.w // 10, c.w // 3))
        if rng.random() < 0.15:  # a gap showing the sky
            x += bw // 2
            continue
        top = int(rng.uniform(0.02, 0.8) * horizon)
        m = c.mask()
        cv2.rectangle(m, (x, top), (x + bw, horizon + 4), 1, -1)
        base = _jitter(rng, [(150, 150, 150), (90, 110, 160), (150, 185, 210), (70, 80, 150),
                             (110, 110, 100)][rng.integers(5)], 20)
        tex = c.noise(8, 6) + rng.normal(0, 4, (c.h, c.w)).astype(np.float32)
        c.paint(m, BUILDING, base, tex)
        # windows: a grid of darker or lighter rectangles, labelled building
        ww, wh = int(rng.integers(5, 14)), int(rng.integers(6, 16))
        gx, gy = ww + int(rng.integers(4, 12)), wh + int(rng.integers(5, 12))
        wcol = _jitter(rng, (60, 50, 40) if rng.random() < 0.7 else (170, 210, 230), 15)
        win = c.mask()
        for wy in range(top + 6, horizon - wh, gy):
            for wx in range(x + 4, x + bw - ww, gx):
                cv2.rectangle(win, (wx, wy), (wx + ww, wy + wh), 1, -1)
        c.paint(win & m, BUILDING, wcol, c.noise(6, 8))
        x += bw + int(rng.integers(0, 10))


def _ground(c: _Canvas, horizon: int):
    """Road (trapezoid toward a vanishing point) with sidewalks on both sides."""
    rng = c.rng
    h, w = c.h, c.w
    vx = int(rng.uniform(0.3, 0.7) * w)
    left_bottom = int(rng.uniform(-0.4, 0.15) * w)
    right_bottom = int(rng.uniform(0.85, 1.4) * w)
    half_top = int(rng.integers(4, 20))
    road = np.array([[vx - half_top, horizon], [vx + half_top, horizon],
                     [right_bottom, h], [left_bottom, h]], np.int32)
    side = c.mask()
    side[horizon:] = 1
    c.paint(side, SIDEWALK, _jitter(rng, (170, 170, 175), 25), c.noise(6, 10))
    tiles = c.mask()  # tile grid lines on the sidewalk, labelled sidewalk
    step = int(rng.integers(10, 24))
    for y in range(horizon, h, step):
        cv2.line(tiles, (0, y), (w, y), 1, 1)
    for x in range(0, w, step * 2):
        cv2.line(tiles, (x, horizon), ((x - vx) * 3 + vx, h + 2 * (h - horizon)), 1, 1)
    c.paint(tiles & side, SIDEWALK, _jitter(rng, (120, 120, 125), 15))
    m = c.mask()
    cv2.fillPoly(m, [road], 1)
    asphalt = _jitter(rng, (85, 80, 80), 15)
    c.paint(m, ROAD, asphalt, c.noise(7, 12) + rng.normal(0, 6, (h, w)).astype(np.float32))
    # curbs: a light edge along both road borders (sidewalk)
    curb = c.mask()
    thick = int(rng.integers(2, 5))
    cv2.line(curb, (vx - half_top, horizon), (left_bottom, h), 1, thick)
    cv2.line(curb, (vx + half_top, horizon), (right_bottom, h), 1, thick)
    c.paint(curb, SIDEWALK, _jitter(rng, (200, 200, 200), 15))
    # dashed lane marks toward the vanishing point (road)
    marks = c.mask()
    for t0 in np.arange(0.05, 1.0, 0.14):
        t1 = t0 + 0.06
        y0, y1 = horizon + (h - horizon) * t0 ** 1.5, horizon + (h - horizon) * t1 ** 1.5
        cx = vx + (w / 2 - vx) * 0.0
        cv2.line(marks, (int(cx), int(y0)), (int(cx), int(y1)), 1, max(1, int(6 * t1)))
    c.paint(marks & m, ROAD, _jitter(rng, (225, 225, 225), 15))
    return road, vx


def _inside_road(road: np.ndarray, x: float, y: float) -> bool:
    return cv2.pointPolygonTest(road.reshape(-1, 1, 2), (float(x), float(y)), False) > 0


def _depth_scale(c: _Canvas, horizon: int, y: float) -> float:
    """Object size factor: 0 at the horizon, 1 at the bottom of the image."""
    return max(0.08, (y - horizon) / max(1, c.h - horizon))


def _tree(c: _Canvas, horizon: int, x: int, base_y: int):
    rng = c.rng
    s = _depth_scale(c, horizon, base_y)
    height = int(c.h * rng.uniform(0.5, 0.9) * (0.4 + s))
    trunk_w = max(3, int(10 * (0.4 + s)))
    m = c.mask()
    cv2.rectangle(m, (x - trunk_w // 2, base_y - height // 2), (x + trunk_w // 2, base_y), 1, -1)
    c.paint(m, VEGETATION, _jitter(rng, (40, 60, 80), 10), c.noise(6, 4))
    crown = c.mask()
    cy, r = base_y - height // 2, max(8, height // 3)
    for _ in range(int(rng.integers(4, 9))):
        dx, dy = rng.normal(0, r * 0.5, 2)
        cv2.ellipse(crown, (int(x + dx), int(cy - abs(dy))),
                    (int(r * rng.uniform(0.5, 1.0)), int(r * rng.uniform(0.4, 0.9))),
                    0, 0, 360, 1, -1)
    green = _jitter(rng, (50, 130, 80), 20)
    c.paint(crown, VEGETATION, green, c.noise(25, 5) + c.noise(10, 2))


def _hedge(c: _Canvas, horizon: int):
    rng = c.rng
    x0 = int(rng.integers(0, c.w))
    length = int(rng.integers(c.w // 8, c.w // 3))
    hh = int(rng.integers(8, 24))
    m = c.mask()
    pts = [(x, horizon + 3 - int(hh * (0.7 + 0.3 * np.sin(x * 0.3))))
           for x in range(x0, x0 + length, 4)]
    poly = np.array(pts + [(x0 + length, horizon + 5), (x0, horizon + 5)], np.int32)
    cv2.fillPoly(m, [poly], 1)
    c.paint(m, VEGETATION, _jitter(rng, (45, 115, 70), 18), c.noise(20, 3))


def _car(c: _Canvas, horizon: int, x: int, y: int):
    rng = c.rng
    s = _depth_scale(c, horizon, y)
    cw = int(c.w * rng.uniform(0.18, 0.3) * s) + 8
    ch = int(cw * rng.uniform(0.45, 0.6))
    body = c.mask()
    x0, y0 = x - cw // 2, y - ch
    cv2.rectangle(body, (x0, y0 + ch // 3), (x0 + cw, y - ch // 8), 1, -1)
    cabin = np.array([[x0 + cw // 6, y0 + ch // 3], [x0 + cw // 4, y0],
                      [x0 + cw * 3 // 4, y0], [x0 + cw * 5 // 6, y0 + ch // 3]], np.int32)
    cv2.fillPoly(body, [cabin], 1)
    wheels = c.mask()
    r = max(2, ch // 5)
    for wx in (x0 + cw // 5, x0 + cw * 4 // 5):
        cv2.circle(wheels, (wx, y - r), r, 1, -1)
    colour = rng.uniform(20, 235, 3)
    c.paint(body, CAR, colour, c.noise(5, 6))
    glass = c.mask()
    inner = np.array([[x0 + cw // 5, y0 + ch // 3 - 1], [x0 + cw // 4 + 2, y0 + 3],
                      [x0 + cw * 3 // 4 - 2, y0 + 3], [x0 + cw * 4 // 5, y0 + ch // 3 - 1]],
                     np.int32)
    cv2.fillPoly(glass, [inner], 1)
    c.paint(glass, CAR, _jitter(rng, (90, 70, 60), 20), c.noise(10, 4))
    lights = c.mask()
    lw = max(2, cw // 10)
    cv2.rectangle(lights, (x0 + 1, y0 + ch // 2), (x0 + lw, y0 + ch // 2 + lw // 2 + 1), 1, -1)
    cv2.rectangle(lights, (x0 + cw - lw, y0 + ch // 2), (x0 + cw - 1, y0 + ch // 2 + lw // 2 + 1),
                  1, -1)
    c.paint(lights, CAR, (40, 40, 230) if rng.random() < 0.5 else (200, 230, 240))
    c.paint(wheels, CAR, _jitter(rng, (25, 25, 25), 8))
    return body | wheels


def _person(c: _Canvas, horizon: int, x: int, y: int):
    rng = c.rng
    s = _depth_scale(c, horizon, y)
    ph = int(c.h * rng.uniform(0.45, 0.7) * s) + 12
    pw = max(4, int(ph * rng.uniform(0.25, 0.35)))
    m = c.mask()
    legs = c.mask()
    head_r = max(2, ph // 9)
    cv2.circle(m, (x, y - ph + head_r), head_r, 1, -1)
    cv2.rectangle(m, (x - pw // 2, y - ph + 2 * head_r), (x + pw // 2, y - ph // 2), 1, -1)
    stride = int(pw * rng.uniform(0.1, 0.5))
    cv2.line(legs, (x - pw // 4, y - ph // 2), (x - pw // 4 - stride, y), 1, max(2, pw // 3))
    cv2.line(legs, (x + pw // 4, y - ph // 2), (x + pw // 4 + stride, y), 1, max(2, pw // 3))
    skin = _jitter(rng, (120, 160, 200), 40)
    head = c.mask()
    cv2.circle(head, (x, y - ph + head_r), head_r, 1, -1)
    c.paint(m, PERSON, rng.uniform(20, 235, 3), c.noise(8, 3))
    c.paint(head, PERSON, skin)
    c.paint(legs, PERSON, rng.uniform(20, 160, 3))
    return m | legs


def _pole(c: _Canvas, horizon: int, x: int, y: int):
    rng = c.rng
    s = _depth_scale(c, horizon, y)
    height = int(c.h * rng.uniform(0.45, 0.7) * (0.5 + s))
    pw = max(3, int(8 * (0.4 + s)))
    m = c.mask()
    cv2.rectangle(m, (x - pw // 2, y - height), (x + pw // 2, y), 1, -1)
    c.paint(m, POLE, _jitter(rng, (110, 110, 110), 35), c.noise(5, 4))
    if rng.random() < 0.6:  # a sign on top (labelled pole)
        sign = c.mask()
        r = max(4, int(3.5 * pw))
        centre = (x, y - height + r)
        if rng.random() < 0.5:
            cv2.circle(sign, centre, r, 1, -1)
        else:
            cv2.rectangle(sign, (x - r, y - height), (x + r, y - height + int(1.4 * r)), 1, -1)
        c.paint(sign, POLE, [(40, 40, 200), (180, 90, 20), (20, 200, 230)][rng.integers(3)])
        m |= sign
    return m


# ----------------------------------------------------------------------------- lighting
def _lighting(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
              horizon: int) -> np.ndarray:
    h, w = labels.shape
    # cast shadows on the ground: dark polygons from the bottom edge (labels unchanged)
    for _ in range(int(rng.integers(0, 4))):
        x0 = rng.uniform(-0.2, 1.0) * w
        poly = np.array([[x0, h], [x0 + rng.uniform(0.1, 0.5) * w, h],
                         [x0 + rng.uniform(0.0, 0.6) * w, horizon + rng.uniform(0, 0.5) * (h - horizon)],
                         [x0 + rng.uniform(-0.2, 0.3) * w, horizon + rng.uniform(0, 0.5) * (h - horizon)]],
                        np.int32)
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [poly], 1)
        m = cv2.GaussianBlur(m.astype(np.float32), (0, 0), rng.uniform(1, 4))
        image *= (1 - rng.uniform(0.25, 0.55) * m)[..., None]
    # linear brightness gradient in a random direction
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * (xx / w - 0.5) + np.sin(angle) * (yy / h - 0.5))
    image *= (1 + rng.uniform(0, 0.5) * ramp)[..., None]
    # global contrast, brightness, colour cast
    mean = image.mean()
    image = (image - mean) * rng.uniform(0.7, 1.25) + mean * rng.uniform(0.65, 1.3)
    image *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    image += rng.normal(0, rng.uniform(2, 7), image.shape).astype(np.float32)
    if rng.random() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.1))
    return np.clip(image, 0, 255)


# ----------------------------------------------------------------------------- public API
def make_scene(seed: int, size: Tuple[int, int] = DEFAULT_SIZE,
               ignore_border: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic street scene: (image BGR uint8 H×W×3, labels uint8 H×W).

    ``size`` is (height, width).  Labels index ``CLASSES``; with ``ignore_border`` > 0 a band of
    that many pixels around cars, people and poles is set to 255 (ignore).
    """
    height, width = int(size[0]), int(size[1])
    if height < 32 or width < 32:
        raise CCNetError(f"scene size {size} is too small: use at least 32×32")
    rng = np.random.default_rng(seed)
    c = _Canvas(height, width, rng)
    horizon = int(height * rng.uniform(0.35, 0.55))
    _sky(c, horizon)
    _buildings(c, horizon)
    road, vx = _ground(c, horizon)
    for _ in range(int(rng.integers(0, 3))):
        _hedge(c, horizon)

    # objects sorted far → near so nearer ones occlude farther ones
    objects = []
    for _ in range(int(rng.integers(1, 4))):
        objects.append(("tree", int(rng.uniform(0, width)), None))
    for _ in range(int(rng.integers(1, 5))):
        objects.append(("car", None, None))
    for _ in range(int(rng.integers(2, 6))):
        objects.append(("person", None, None))
    for _ in range(int(rng.integers(1, 4))):
        objects.append(("pole", None, None))
    placed = []
    for kind, _, _ in objects:
        for _ in range(20):  # find a spot on the road (cars) or beside it (the rest)
            y = horizon + (height - horizon) * rng.uniform(0.08, 1.0) ** 0.8
            x = rng.uniform(0, width)
            if _inside_road(road, x, y) == (kind == "car"):
                break
        placed.append((y, kind, int(x), int(y)))
    placed.sort()
    things = c.mask()
    for _, kind, x, y in placed:
        if kind == "tree":
            _tree(c, horizon, x, y)
        elif kind == "car":
            things |= _car(c, horizon, x, y)
        elif kind == "person":
            things |= _person(c, horizon, x, y)
        else:
            things |= _pole(c, horizon, x, y)

    image = _lighting(c.image, c.labels, rng, horizon)
    labels = c.labels
    if ignore_border > 0:
        k = np.ones((3, 3), np.uint8)
        edge = cv2.morphologyEx((labels * 1).astype(np.uint8), cv2.MORPH_GRADIENT, k) > 0
        edge = cv2.dilate(edge.astype(np.uint8), k, iterations=ignore_border - 1) > 0
        labels = labels.copy()
        labels[edge & (cv2.dilate(things, k, iterations=ignore_border) > 0)] = IGNORE_INDEX
    return (image + 0.5).astype(np.uint8), labels


def write_dataset(root: str, n: int, seed: int = 0, size: Tuple[int, int] = DEFAULT_SIZE,
                  ignore_border: int = 0) -> str:
    """Write ``n`` scenes as ``root/images/<stem>.png`` + ``root/labels/<stem>.png``.

    Scene ``i`` uses seed ``seed + i`` (stems ``scene_<seed+i>``), so disjoint seed ranges give
    disjoint train/val sets.  This is the generic ``folder`` layout of ``ccnet.datasets``.
    Each file is written to a temporary name and renamed, so no half-written file is left.
    Returns ``root``.
    """
    if n < 1:
        raise CCNetError(f"number of scenes must be >= 1, got {n}")
    image_dir, label_dir = os.path.join(root, "images"), os.path.join(root, "labels")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(label_dir, exist_ok=True)
    for i in range(n):
        image, labels = make_scene(seed + i, size, ignore_border)
        stem = f"scene_{seed + i:06d}"
        write_image(os.path.join(image_dir, stem + ".png"), image)
        write_image(os.path.join(label_dir, stem + ".png"), labels)
    return root


__all__ = ["CLASSES", "PALETTE", "IGNORE_INDEX", "DEFAULT_SIZE", "make_scene", "write_dataset"]
