"""DeepFashion (In-shop) with OpenPose keypoints in CoCosNet's layout (``data/deepfashion_dataset.py``).

``<root>/img/<gender>/<category>/<id>/<name>.jpg``, ``<root>/pose/.../<name>_candidate.txt``
(rows ``x y score id``) and ``_subset.txt`` (18 candidate indices, one per OpenPose-COCO
joint, -1 = missing, then total score and count), ``<root>/{train,val}.txt`` listing
image paths (backslashes allowed). Pair-list keys are those relative paths.

Condition, 20 channels: the skeleton rendered like OpenPose/CoCosNet at the image's own
size (joint discs of radius 4, 17 limbs as ellipses of half-width 4 blended 0.4/0.6, in
the 18 OpenPose colours; BGR canvas converted to RGB), resized nearest to the load size,
cropped/flipped, in [0, 1] (3 channels); then for each of the 17 limbs the distance map
``clip(DT_L1(limb)/3, 0, 255)/255`` (1 everywhere when a limb end is missing), bilinear.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from evalkit.data.pairs import PairedDataset, normalise_key, read_text
from evalkit.data.registry import register_dataset
from evalkit.data.transforms import TransformParams, apply_pil
from evalkit.errors import EvalkitError

LAYOUT = "img/.../<name>.jpg, pose/.../<name>_{candidate,subset}.txt, {train,val}.txt"
JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist", "r_hip", "r_knee",
          "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
# OpenPose limb sequence (1-based joints); CoCosNet draws the first 17
LIMBS = ((2, 3), (2, 6), (3, 4), (4, 5), (6, 7), (7, 8), (2, 9), (9, 10), (10, 11), (2, 12), (12, 13), (13, 14),
         (2, 1), (1, 15), (15, 17), (1, 16), (16, 18))
COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
           (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
           (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))
STICK = 4


def read_pose(candidate_path: Path, subset_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(candidates [N, 4], joint indices [18] int, -1 = missing)``; with several people the
    highest-scoring subset row is used."""
    arrays = []
    for path in (candidate_path, subset_path):
        if not path.is_file():
            raise EvalkitError(f"pose file not found: {path}", path=path)
        try:
            arrays.append(np.atleast_2d(np.loadtxt(path, ndmin=2)))
        except ValueError as err:
            raise EvalkitError(f"cannot parse pose file {path} (corrupt: {err}); expected numeric rows", path=path) from err
    cand, subset = arrays
    if cand.size and cand.shape[1] < 2:
        raise EvalkitError(f"pose file {candidate_path}: expected rows 'x y score id', got {cand.shape[1]} columns",
                           path=candidate_path)
    if subset.shape[1] < 18:
        raise EvalkitError(f"pose file {subset_path}: expected 18 joint indices a row, got {subset.shape[1]}",
                           path=subset_path)
    row = subset[int(np.argmax(subset[:, 18]))] if subset.shape[1] > 18 and len(subset) > 1 else subset[0]
    joints = row[:18].astype(np.int64)
    if joints.max(initial=-1) >= len(cand) or joints.min(initial=0) < -1:
        raise EvalkitError(f"pose file {subset_path}: joint index {int(joints.max())} out of range for "
                           f"{len(cand)} candidates in {candidate_path}", path=subset_path)
    return cand, joints


def render_pose(cand: np.ndarray, joints: np.ndarray, height: int, width: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """CoCosNet's rendering: ``(RGB skeleton uint8 [H, W, 3], 17 limb masks uint8 {0, 255})``."""
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for i in range(18):
        if joints[i] == -1:
            continue
        x, y = cand[joints[i]][:2]
        cv2.circle(canvas, (int(x), int(y)), 4, COLOURS[i], thickness=-1)
    limbs = []
    for i, (a, b) in enumerate(LIMBS):
        index = joints[[a - 1, b - 1]]
        if -1 in index:
            limbs.append(np.zeros((height, width), dtype=np.uint8))
            continue
        xs, ys = cand[index, 0], cand[index, 1]
        length = float(np.hypot(xs[0] - xs[1], ys[0] - ys[1]))
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly((int(np.mean(xs)), int(np.mean(ys))), (int(length / 2), STICK), int(angle), 0, 360, 1)
        cur = canvas.copy()
        cv2.fillConvexPoly(cur, polygon, COLOURS[i])
        canvas = cv2.addWeighted(canvas, 0.4, cur, 0.6, 0)
        limb = np.zeros((height, width), dtype=np.uint8)
        cv2.fillConvexPoly(limb, polygon, 255)
        limbs.append(limb)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), limbs


class DeepFashion(PairedDataset):
    name = "deepfashion"
    cond_channels = 3 + len(LIMBS)
    num_classes = None
    cond_kind = "pose"
    pair_stem = "deepfashion"

    def split_source(self) -> str:
        return f"paths in {self.root / ('train.txt' if self.split == 'train' else 'val.txt')}"

    def list_keys(self) -> list[str]:
        listing = self.root / ("train.txt" if self.split == "train" else "val.txt")
        if not listing.is_file():
            return []
        text = read_text(listing, "split listing", "one image path a line")
        return [normalise_key(t) for t in text.splitlines() if t.strip()]

    def image_path(self, key: str, exemplar: bool) -> Path:
        return self.root / key

    def pose_paths(self, key: str) -> tuple[Path, Path]:
        parts = Path(key).parts
        rel = Path("pose", *parts[1:]) if parts[0] == "img" else Path(key)
        stem = rel.with_suffix("")
        return (self.root / f"{stem}_candidate.txt", self.root / f"{stem}_subset.txt")

    def label_files(self, key: str, exemplar: bool) -> list[Path]:
        return list(self.pose_paths(key))

    def sample_name(self, key: str) -> str:
        parts = Path(key).with_suffix("").parts
        return "__".join(parts[1:] if parts[0] == "img" else parts)

    def encode(self, key, exemplar, params: TransformParams, image: Image.Image):
        cand, joints = read_pose(*self.pose_paths(key))
        skeleton, limbs = render_pose(cand, joints, image.size[1], image.size[0])
        pose = Image.fromarray(skeleton).resize((params.load, params.load), Image.NEAREST)
        pose = np.asarray(apply_pil(pose, params, Image.NEAREST), dtype=np.float32).transpose(2, 0, 1) / 255.0
        dists = []
        for limb in limbs:
            d = np.clip(cv2.distanceTransform(255 - limb, cv2.DIST_L1, 3) / 3, 0, 255).astype(np.uint8)
            dists.append(np.asarray(apply_pil(Image.fromarray(d), params, Image.BILINEAR), dtype=np.float32) / 255.0)
        return torch.from_numpy(np.concatenate([pose, np.stack(dists)])), None


@register_dataset("deepfashion", description="DeepFashion pose (CoCosNet): RGB skeleton + 17 limb distance maps = 20 channels",
                  needs_root=True, cond_kind="pose", layout=LAYOUT, paired=True)
def _deepfashion(*, root, split, size, n, seed, **kw) -> DeepFashion:
    return DeepFashion(root=root, split=split, size=size, n=n, seed=seed, **kw)
