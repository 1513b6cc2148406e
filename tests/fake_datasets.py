"""Tiny fake copies of the real pose datasets, written in their real file formats.

Each `write_*` function writes into a folder laid out as the builder's manual folder
(see each data_builders/<name>/README.md) and returns what a test needs to check the
build: the ground truth it wrote, in the dataset's native joints.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import scipy.io
import tensorflow_datasets as tfds
from PIL import Image

from lcrnet_jax.data import features
from lcrnet_jax.data.records import open_split, skipped_at_build


def build(builder_class, config, data_dir: pathlib.Path, manual_dir: pathlib.Path) -> dict:
    """Builds `builder_class` (with `config`, or its only config) and opens its splits."""
    builder = builder_class(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir))
    )
    name = builder.name if config is None else f"{builder.name}/{config.name}"
    return tfds.data_source(name, data_dir=data_dir)


def skipped(data_dir: pathlib.Path, name: str, split: str) -> tuple[int, list[str]]:
    """`skipped_at_build` of split `split` of dataset `name`, reopened from disk."""
    return skipped_at_build(open_split(name, split, data_dir=str(data_dir)), split)


def records(source, key: str = "image_id") -> dict:
    """Every record of a data source, by `key` (text decoded, numbers as int)."""
    out = {}
    for i in range(len(source)):
        record = source[i]
        k = record[key]
        out[k.decode() if isinstance(k, bytes) else int(k)] = record
    return out


# ------------------------------------------------------------------ CMU MoCap (BVH, ASF/AMC)

# A CMU-like skeleton, Y up, facing +Z: (ASF bone, BVH joint, parent bone, direction, length).
MOCAP_BONES = (
    ("lhipjoint", "LHipJoint", "root", (1, 0, 0), 1.0),
    ("lfemur", "LeftUpLeg", "lhipjoint", (0, -1, 0), 4.0),
    ("ltibia", "LeftLeg", "lfemur", (0, -1, 0), 4.0),
    ("lfoot", "LeftFoot", "ltibia", (0, 0, 1), 1.0),
    ("rhipjoint", "RHipJoint", "root", (-1, 0, 0), 1.0),
    ("rfemur", "RightUpLeg", "rhipjoint", (0, -1, 0), 4.0),
    ("rtibia", "RightLeg", "rfemur", (0, -1, 0), 4.0),
    ("rfoot", "RightFoot", "rtibia", (0, 0, 1), 1.0),
    ("lowerback", "LowerBack", "root", (0, 1, 0), 2.0),
    ("upperback", "Spine", "lowerback", (0, 1, 0), 2.0),
    ("thorax", "Spine1", "upperback", (0, 1, 0), 1.0),
    ("lowerneck", "Neck", "thorax", (0, 1, 0), 0.5),
    ("upperneck", "Neck1", "lowerneck", (0, 1, 0), 0.5),
    ("head", "Head", "upperneck", (0, 1, 0), 1.0),
    ("lclavicle", "LeftShoulder", "thorax", (1, 0, 0), 1.5),
    ("lhumerus", "LeftArm", "lclavicle", (0, -1, 0), 3.0),
    ("lradius", "LeftForeArm", "lhumerus", (0, -1, 0), 2.5),
    ("lwrist", "LeftHand", "lradius", (0, -1, 0), 0.5),
    ("rclavicle", "RightShoulder", "thorax", (-1, 0, 0), 1.5),
    ("rhumerus", "RightArm", "rclavicle", (0, -1, 0), 3.0),
    ("rradius", "RightForeArm", "rhumerus", (0, -1, 0), 2.5),
    ("rwrist", "RightHand", "rradius", (0, -1, 0), 0.5),
)


def mocap_motion(num_frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Root (F, 6) tx ty tz rx ry rz and per-bone (F, 3) rx ry rz, in units and degrees."""
    rng = np.random.default_rng(seed)
    motion = {bone[0]: rng.uniform(-40, 40, (num_frames, 3)) for bone in MOCAP_BONES}
    root = np.concatenate(
        [
            rng.uniform(-5, 5, (num_frames, 1)),
            10 + rng.uniform(-1, 1, (num_frames, 1)),
            rng.uniform(-5, 5, (num_frames, 1)),
            rng.uniform(-30, 30, (num_frames, 3)),
        ],
        axis=1,
    )
    motion["root"] = root
    return motion


def with_reference_frame(motion: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`motion` after a T-pose frame, as CMU's BVH conversions start: zero root rotation at
    the first frame's root position, arms horizontal, other bones at rest."""
    t_pose = {name: np.zeros((1, 3)) for name, *_ in MOCAP_BONES}
    t_pose["lhumerus"] = np.array([[0.0, 0.0, 90.0]])
    t_pose["rhumerus"] = np.array([[0.0, 0.0, -90.0]])
    t_pose["root"] = np.concatenate([motion["root"][:1, :3], np.zeros((1, 3))], axis=1)
    return {name: np.concatenate([t_pose[name], values]) for name, values in motion.items()}


def write_asf(path: pathlib.Path, *, length_unit: float = 0.45, axes=None) -> None:
    """An ASF skeleton of MOCAP_BONES; `axes` maps a bone to its `axis` angles (degrees)."""
    axes = axes or {}
    lines = [
        ":version 1.10",
        ":name fake",
        ":units",
        "  mass 1.0",
        f"  length {length_unit}",
        "  angle deg",
        ":documentation",
        "  a fake CMU-like skeleton",
        ":root",
        "   order TX TY TZ RX RY RZ",
        "   axis XYZ",
        "   position 0 0 0",
        "   orientation 0 0 0",
        ":bonedata",
    ]
    for i, (name, _, _, direction, length) in enumerate(MOCAP_BONES):
        ax = axes.get(name, (0.0, 0.0, 0.0))
        lines += [
            "  begin",
            f"     id {i + 1}",
            f"     name {name}",
            "     direction {} {} {}".format(*direction),
            f"     length {length}",
            "     axis {} {} {}  XYZ".format(*ax),
            "    dof rx ry rz",
            "    limits (-160.0 20.0)",
            "     (-70.0 70.0)",
            "     (-60.0 70.0)",
            "  end",
        ]
    children: dict[str, list[str]] = {}
    for name, _, parent, _, _ in MOCAP_BONES:
        children.setdefault(parent, []).append(name)
    lines += [":hierarchy", "  begin"]
    lines += [f"    {parent} {' '.join(kids)}" for parent, kids in children.items()]
    lines += ["  end", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def write_amc(path: pathlib.Path, motion: dict[str, np.ndarray]) -> None:
    lines = ["#!OML:ASF fake.asf", ":FULLY-SPECIFIED", ":DEGREES"]
    for f in range(motion["root"].shape[0]):
        lines.append(str(f + 1))
        lines.append("root " + " ".join(f"{v:.6f}" for v in motion["root"][f]))
        for name, *_ in MOCAP_BONES:
            lines.append(name + " " + " ".join(f"{v:.6f}" for v in motion[name][f]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_bvh(path: pathlib.Path, motion: dict[str, np.ndarray]) -> None:
    """The BVH equivalent of MOCAP_BONES + `motion`: one joint at each bone's start.

    A bone's ASF rotation Rz Ry Rx about fixed axes is BVH's "Zrotation Yrotation
    Xrotation" about moving axes, so the values are written as rz ry rx.
    """
    vector = {b[0]: np.asarray(b[3], float) * b[4] for b in MOCAP_BONES}
    children: dict[str, list[tuple]] = {}
    for bone in MOCAP_BONES:
        children.setdefault(bone[2], []).append(bone)
    order: list[str] = []
    lines = [
        "HIERARCHY",
        "ROOT Hips",
        "{",
        "  OFFSET 0 0 0",
        "  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation",
    ]

    def emit(bone, offset, depth):
        name, joint = bone[0], bone[1]
        pad = "  " * depth
        order.append(name)
        lines.extend(
            [
                f"{pad}JOINT {joint}",
                f"{pad}{{",
                "{}  OFFSET {} {} {}".format(pad, *offset),
                f"{pad}  CHANNELS 3 Zrotation Yrotation Xrotation",
            ]
        )
        kids = children.get(name, [])
        for kid in kids:
            emit(kid, vector[name], depth + 1)
        if not kids:
            lines.extend(
                [
                    f"{pad}  End Site",
                    f"{pad}  {{",
                    "{}    OFFSET {} {} {}".format(pad, *vector[name]),
                    f"{pad}  }}",
                ]
            )
        lines.append(f"{pad}}}")

    for bone in children["root"]:
        emit(bone, (0.0, 0.0, 0.0), 1)
    lines.append("}")
    num_frames = motion["root"].shape[0]
    lines += ["MOTION", f"Frames: {num_frames}", "Frame Time: 0.008333"]
    for f in range(num_frames):
        root = motion["root"][f]
        values = [*root[:3], root[5], root[4], root[3]]
        for name in order:
            rx, ry, rz = motion[name][f]
            values += [rz, ry, rx]
        lines.append(" ".join(f"{v:.6f}" for v in values))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_cmu_mocap(root: pathlib.Path, num_frames: int = 12) -> dict[str, dict]:
    """CMU-style manual folder: `subjects/01/01.asf` + `01_01.amc`, and `bvh/01_02.bvh`
    (its captured motion after a reference T-pose frame, as in CMU's BVH conversions).

    Returns:
      {sequence id: captured motion} of the two sequences.
    """
    amc_motion, bvh_motion = mocap_motion(num_frames, 1), mocap_motion(num_frames + 3, 2)
    write_asf(root / "subjects" / "01" / "01.asf")
    write_amc(root / "subjects" / "01" / "01_01.amc", amc_motion)
    write_bvh(root / "bvh" / "01_02.bvh", with_reference_frame(bvh_motion))
    return {"01_01": amc_motion, "01_02": bvh_motion}


def write_image(path: pathlib.Path, height: int, width: int, seed: int = 0) -> None:
    """A tiny random RGB JPEG."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    path.write_bytes(features.encode_image(image, "jpeg"))


def corrupt_image(path: pathlib.Path) -> None:
    """Truncates an image file to half its bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# -------------------------------------------------------------------------------- LSP

LSP_SIZE = (30, 40)  # image height, width


def lsp_joints(num_images: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 14, 2) MATLAB (1-based) joint positions inside LSP_SIZE and (N, 14) 0/1 flags.

    Image 0 has its joint 0 outside the image and joint 1 flagged.
    """
    rng = np.random.default_rng(seed)
    h, w = LSP_SIZE
    xy = np.stack([rng.uniform(1, w, (num_images, 14)), rng.uniform(1, h, (num_images, 14))], -1)
    xy[0, 0] = (w + 5, 3)
    flags = np.zeros((num_images, 14))
    flags[0, 1] = 1
    flags[1:, 5] = 1
    return xy, flags


def write_lsp(root: pathlib.Path, num_images: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """`lsp_dataset/joints.mat` (3 x 14 x N, third row 1 = occluded) and its images."""
    xy, occluded = lsp_joints(num_images, 0)
    array = np.concatenate([xy, occluded[..., None]], -1).transpose(2, 1, 0)  # (3, 14, N)
    folder = root / "lsp_dataset"
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "joints.mat", {"joints": array})
    for i in range(num_images):
        write_image(folder / "images" / f"im{i + 1:04d}.jpg", *LSP_SIZE, seed=i)
    return xy, occluded


def write_lspet(root: pathlib.Path, num_images: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """`lspet_dataset/joints.mat` (14 x 3 x N, third column 1 = visible) and its images."""
    xy, hidden = lsp_joints(num_images, 1)
    visible = 1 - hidden
    array = np.concatenate([xy, visible[..., None]], -1).transpose(1, 2, 0)  # (14, 3, N)
    folder = root / "lspet_dataset"
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "joints.mat", {"joints": array})
    for i in range(num_images):
        write_image(folder / "images" / f"im{i + 1:05d}.jpg", *LSP_SIZE, seed=10 + i)
    return xy, visible


# ------------------------------------------------------------------------------- COCO

COCO_SIZE = (24, 32)  # height, width


def _coco_person(ann_id, image_id, seed, *, crowd=False, labelled=True):
    rng = np.random.default_rng(seed)
    h, w = COCO_SIZE
    keypoints = np.zeros((17, 3))
    if labelled and not crowd:
        keypoints[:, 0] = rng.integers(0, w, 17)
        keypoints[:, 1] = rng.integers(0, h, 17)
        keypoints[:, 2] = 2
        keypoints[0] = 0  # nose not annotated
        keypoints[3, 2] = 1  # left ear annotated but occluded
    x, y = rng.uniform(0, 10, 2)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": keypoints.astype(int).ravel().tolist(),
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "bbox": [float(x), float(y), 12.0, 14.0],
        "area": 100.0 + ann_id,
        "iscrowd": int(crowd),
        "segmentation": {"counts": "abc", "size": [h, w]} if crowd else [[0, 0, 1, 1, 2, 0]],
    }


def write_coco(root: pathlib.Path) -> dict[str, dict]:
    """COCO 2017 keypoint jsons + images.

    train: image 1 (a person and a crowd), 2 (no person), 3 (a person, corrupt image),
    4 (a person), 5 (a crowd and a person without keypoints); validation: image 10 (a
    person and a person without keypoints, grey JPEG), 11 (no person).

    Returns:
      {split: the json written}.
    """
    splits = {
        "train2017": (
            [1, 2, 3, 4, 5],
            [(100, 1, False, True), (101, 1, True, True), (102, 3, False, True)]
            + [(103, 4, False, True), (104, 5, True, True), (105, 5, False, False)],
        ),
        "val2017": ([10, 11], [(200, 10, False, True), (201, 10, False, False)]),
    }
    written = {}
    for folder, (image_ids, anns) in splits.items():
        images = [
            {"id": i, "file_name": f"{i:012d}.jpg", "height": COCO_SIZE[0], "width": COCO_SIZE[1]}
            for i in image_ids
        ]
        data = {
            "images": images,
            "annotations": [_coco_person(a, i, a, crowd=c, labelled=k) for a, i, c, k in anns]
            + [{"id": 999, "image_id": image_ids[0], "category_id": 2, "bbox": [0, 0, 1, 1]}],
            "categories": [{"id": 1, "name": "person", "keypoints": [], "skeleton": []}],
        }
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        (root / "annotations" / f"person_keypoints_{folder}.json").write_text(json.dumps(data))
        for i in image_ids:
            write_image(root / folder / f"{i:012d}.jpg", *COCO_SIZE, seed=i)
        written[folder] = data
    corrupt_image(root / "train2017" / f"{3:012d}.jpg")
    grey = np.random.default_rng(0).integers(0, 255, COCO_SIZE, dtype=np.uint8)
    Image.fromarray(grey).save(root / "val2017" / f"{10:012d}.jpg", format="JPEG")
    return written


# ------------------------------------------------------------------------------- MPII

MPII_SIZE = (40, 50)  # height, width
_EMPTY = np.zeros((0, 0))


def _struct_array(records: list[dict], shape=None) -> np.ndarray:
    """A MATLAB struct array (what savemat writes for a structured numpy array)."""
    fields = list(dict.fromkeys(f for r in records for f in r))
    array = np.zeros(shape or (1, len(records)), dtype=[(f, object) for f in fields])
    for i, record in enumerate(records):
        for f in fields:
            array.flat[i][f] = record.get(f, _EMPTY)
    return array


def _cell(items, shape) -> np.ndarray:
    cell = np.empty(shape, dtype=object)
    for i, item in enumerate(items):
        cell.flat[i] = item
    return cell


def _mpii_person(rng, *, with_joints=True, missing=(), visibility=None):
    """An annorect: head box, scale, objpos and (optionally) annopoints in MATLAB pixels."""
    h, w = MPII_SIZE
    rect = {
        "scale": float(rng.uniform(0.5, 2)),
        "objpos": {"x": float(rng.uniform(1, w)), "y": float(rng.uniform(1, h))},
    }
    if not with_joints:
        return rect, None
    joints = np.stack([rng.uniform(1, w, 16), rng.uniform(1, h, 16)], -1)
    visibility = visibility or {}
    points = [
        {"id": k, "x": joints[k, 0], "y": joints[k, 1], "is_visible": visibility.get(k, "1")}
        for k in range(16)
        if k not in missing
    ]
    x1, y1 = rng.uniform(1, 10, 2)
    rect.update(x1=x1, y1=y1, x2=x1 + 8.0, y2=y1 + 9.0)
    rect["annopoints"] = {"point": _struct_array(points)}
    return rect, joints


def write_mpii(root: pathlib.Path, *, groups: bool = True) -> dict:
    """`mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat`, `groups_v12.mat`, images.

    Images (0-based): 0, 1 in video 1; 2, 3 in video 2; 4 without video; 5 test without
    people (left out, as training images without people are); 6 test (two people, no
    joints); 7 video 3, corrupt image file.
    Image 0 has 3 people: 0 and 1 form a multi-person group, 2 is single-person; its
    person 0 lacks joint 9 and has joint 3 occluded ('0'), joint 4 occluded (0), joint 5
    with an empty is_visible; person 1 has joint 2 outside the image. Image 1's second
    person has no annopoints.

    Returns:
      {"names", "joints" {(image, person): (16, 2) MATLAB pixels}, "objpos" {(image,
      person): (2,) x, y MATLAB pixels}, "video", "is_train"}.
    """
    rng = np.random.default_rng(0)
    names = [f"{i:09d}.jpg" for i in range(8)]
    video = [1, 1, 2, 2, None, 4, 5, 3]
    is_train = [1, 1, 1, 1, 1, 0, 0, 1]
    people = {
        0: [
            {"missing": (9,), "visibility": {3: "0", 4: 0, 5: _EMPTY}},
            {"visibility": {7: 1}},
            {},
        ],
        1: [{}, {"with_joints": False}],
        2: [{}],
        3: [{}],
        4: [{}],
        5: [],
        6: [{"with_joints": False}, {"with_joints": False}],
        7: [{}],
    }
    joints, objpos, annolist = {}, {}, []
    for i, name in enumerate(names):
        rects = []
        for p, options in enumerate(people[i]):
            rect, xy = _mpii_person(rng, **options)
            objpos[(i, p)] = np.array([rect["objpos"]["x"], rect["objpos"]["y"]])
            if xy is not None:
                joints[(i, p)] = xy
            rects.append(rect)
        if i == 0:
            joints[(0, 1)][2] = (MPII_SIZE[1] + 3, 5)
            rects[1]["annopoints"]["point"][0, 2]["x"] = MPII_SIZE[1] + 3
            rects[1]["annopoints"]["point"][0, 2]["y"] = 5
        annolist.append(
            {
                "image": {"name": name},
                "annorect": _struct_array(rects) if rects else _EMPTY,
                "frame_sec": 10.0 if video[i] else _EMPTY,
                "vididx": float(video[i]) if video[i] else _EMPTY,
            }
        )
    single = [np.array([[3.0]]), np.array([[1.0]]), _EMPTY, np.array([[1.0]])] + [_EMPTY] * 4
    release = {
        "annolist": _struct_array(annolist),
        "img_train": np.array([is_train], float),
        "version": "12",
        "single_person": _cell(single, (8, 1)),
        "act": _struct_array(
            [
                {"cat_name": "sports", "act_name": "running", "act_id": float(i + 1)}
                for i in range(8)
            ],
            shape=(8, 1),
        ),
        "video_list": _cell([f"vid{v}" for v in range(1, 6)], (1, 5)),
    }
    folder = root / "mpii_human_pose_v1_u12_2"
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "mpii_human_pose_v1_u12_1.mat", {"RELEASE": release})
    if groups:
        # Person 2 (1-based) is also a group of its own: groups may overlap.
        image_groups = [_cell([np.array([[1.0, 2.0]]), np.array([[2.0]])], (1, 2))]
        image_groups += [_EMPTY] * 7
        scipy.io.savemat(root / "groups_v12.mat", {"groups": _cell(image_groups, (8, 1))})
    for i, name in enumerate(names):
        write_image(root / "images" / name, *MPII_SIZE, seed=i)
    corrupt_image(root / "images" / names[7])
    return {
        "names": names,
        "joints": joints,
        "objpos": objpos,
        "video": video,
        "is_train": is_train,
    }


# -------------------------------------------------------------------------- MuPoTS-3D

MUPOTS_SIZE = (32, 48)  # height, width
MUPOTS_INTRINSICS = (40.0, 42.0, 24.0, 16.0)  # fx, fy, cx, cy


def _poses_mm(rng, shape):
    """Random (..., 17, 3) camera-coordinate poses in mm, about 4 m in front."""
    centre = np.concatenate(
        [rng.uniform(-400, 400, (*shape, 1, 2)), rng.uniform(3500, 4500, (*shape, 1, 1))], -1
    )
    return centre + rng.uniform(-500, 500, (*shape, 17, 3))


def _project(poses_mm, intrinsics):
    fx, fy, cx, cy = intrinsics
    return np.stack(
        [
            fx * poses_mm[..., 0] / poses_mm[..., 2] + cx,
            fy * poses_mm[..., 1] / poses_mm[..., 2] + cy,
        ],
        -1,
    )


def write_mupots(root: pathlib.Path, *, sequences=(1, 2), frames=3, people=2, muco=True) -> dict:
    """`MultiPersonTestSet/TS<n>/{annot.mat, occlusion.mat, img_%06d.jpg}` (+ MuCo json).

    In TS1, person 1 of frame 1 is not valid; TS2's frame 2 image is corrupt.

    Returns:
      {n: {"annot3" (F, P, 17, 3) mm, "annot2", "univ", "occluded", "valid"}, "muco": json}.
    """
    rng = np.random.default_rng(0)
    written: dict = {}
    for n in sequences:
        folder = root / "MultiPersonTestSet" / f"TS{n}"
        folder.mkdir(parents=True, exist_ok=True)
        annot3 = _poses_mm(rng, (frames, people))
        annot2 = _project(annot3, MUPOTS_INTRINSICS)
        univ = annot3 * 0.9
        occluded = rng.random((frames, people, 17)) < 0.3
        valid = np.ones((frames, people), bool)
        if n == sequences[0]:
            valid[1, 1] = False
        annotations = np.empty((frames, people), dtype=object)
        labels = np.empty((frames, people), dtype=object)
        for f in range(frames):
            for p in range(people):
                annotations[f, p] = {
                    "annot2": annot2[f, p].T,
                    "annot3": annot3[f, p].T,
                    "univ_annot3": univ[f, p].T,
                    "isValidFrame": float(valid[f, p]),
                }
                labels[f, p] = occluded[f, p][None].astype(float)
            write_image(folder / f"img_{f:06d}.jpg", *MUPOTS_SIZE, seed=100 * n + f)
        scipy.io.savemat(folder / "annot.mat", {"annotations": annotations})
        scipy.io.savemat(folder / "occlusion.mat", {"occlusion_labels": labels})
        written[n] = {
            "annot3": annot3,
            "annot2": annot2,
            "univ": univ,
            "occluded": occluded,
            "valid": valid,
        }
    if len(sequences) > 1:
        corrupt_image(
            root / "MultiPersonTestSet" / f"TS{sequences[1]}" / f"img_{frames - 1:06d}.jpg"
        )
    if muco:
        cam = _poses_mm(rng, (2,))
        cam21 = np.concatenate([cam, cam[:, :4]], 1)  # 21 joints: hands and toes appended
        data = {
            "images": [  # image 8 has no people: not a training example
                {
                    "id": image,
                    "file_name": f"unaugmented_set/1/img_{image}.jpg",
                    "width": MUPOTS_SIZE[1],
                    "height": MUPOTS_SIZE[0],
                    "f": [40.0, 42.0],
                    "c": [24.0, 16.0],
                }
                for image in (7, 8)
            ],
            "annotations": [
                {
                    "id": 70 + p,
                    "image_id": 7,
                    "keypoints_cam": cam21[p].tolist(),
                    "keypoints_img": _project(cam21[p], MUPOTS_INTRINSICS).tolist(),
                    "bbox": [1.0, 2.0, 10.0, 20.0],
                    "is_valid": 1,
                }
                for p in range(2)
            ],
        }
        (root / "MuCo").mkdir(parents=True, exist_ok=True)
        (root / "MuCo" / "MuCo-3DHP.json").write_text(json.dumps(data))
        for image in (7, 8):
            write_image(
                root / "MuCo" / "unaugmented_set" / "1" / f"img_{image}.jpg",
                *MUPOTS_SIZE,
                seed=image,
            )
        written["muco"] = data
    return written


# ------------------------------------------------------------------------- Human3.6M

H36M_SIZE = (24, 32)  # height, width
H36M_CAMERAS = ("54138969", "55011271", "58860488", "60457274")
H36M_SEQUENCES = {
    1: ("Directions 1", "Directions", "TakingPhoto"),
    11: ("Directions 1", "Walking 1", "Walking"),
}
H36M_FRAMES = 130
H36M_SAMPLED = (0, 64, 128)
H36M_D2_SHIFT = np.array([0.5, -0.25])  # S1's D2 CDFs differ from the projection by this
# The 17 joints of VideoPose3D's files among the 32 recorded (its h36m_dataset.py).
H36M_JOINTS17 = [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27]


def _rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _write_cdf(path: pathlib.Path, values: np.ndarray) -> None:
    """An official-style pose CDF: one record 'Pose' of shape (F, 32 * D), float32."""
    from cdflib.cdfwrite import CDF

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = values.shape[0]
    writer = CDF(str(path))
    spec = {
        "Variable": "Pose",
        "Data_Type": CDF.CDF_FLOAT,
        "Num_Elements": 1,
        "Rec_Vary": True,
        "Dim_Sizes": [frames, values[0].size],
    }
    writer.write_var(spec, var_data=values.reshape(1, frames, -1).astype(np.float32))
    writer.close()


def write_human36m(root: pathlib.Path, *, layout: str = "mono") -> dict:
    """A Human3.6M manual folder for subjects 1 and 11 (sequences: H36M_SEQUENCES).

    Poses: `layout` "mono" (D3_Positions_mono CDFs, plus D2_Positions CDFs for S1),
    "world" (D3_Positions CDFs) or "npz" (VideoPose3D's data_3d_h36m.npz, plus its
    data_2d_h36m_gt.npz for S1: 17 joints, per camera in H36M_CAMERAS' order); always
    `camera-parameters.json` with tiny intrinsics. Frames H36M_SAMPLED of every sequence
    and camera as `S<n>/Images/<seq>.<cam>/frame_%06d.jpg` (1-based); S11 "Walking 1"
    camera 2 frame 64 is corrupt.

    Returns:
      {"world": {(subject, seq): (F, 32, 3) mm}, "cameras": {(subject, cam id): (R, t mm)},
       "intrinsics": {cam id: (4,)}}.
    """
    rng = np.random.default_rng(0)
    intrinsics = {
        cam: np.array([30.0 + i, 31.0 + i, 16.0, 12.0]) for i, cam in enumerate(H36M_CAMERAS)
    }
    cameras, world = {}, {}
    for subject, sequences in H36M_SEQUENCES.items():
        for cam in H36M_CAMERAS:
            cameras[(subject, cam)] = (
                _rotation(rng),
                np.array([0.0, 0.0, 4000.0]) + rng.uniform(-200, 200, 3),
            )
        for seq in sequences:
            body = rng.uniform(-300, 300, (1, 32, 3)) + rng.uniform(-50, 50, (H36M_FRAMES, 32, 3))
            world[(subject, seq)] = body
    calibration = {
        "intrinsics": {
            cam: {
                "calibration_matrix": [[k[0], 0, k[2]], [0, k[1], k[3]], [0, 0, 1]],
                "distortion": [0.0] * 5,
            }
            for cam, k in intrinsics.items()
        },
        "extrinsics": {
            f"S{s}": {
                cam: {"R": r.tolist(), "t": t[:, None].tolist()}
                for (s2, cam), (r, t) in cameras.items()
                if s2 == s
            }
            for s in H36M_SEQUENCES
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "camera-parameters.json").write_text(json.dumps(calibration))
    npz: dict = {}
    npz2d: dict = {}
    for (subject, seq), body in world.items():
        features_dir = root / f"S{subject}" / "MyPoseFeatures"
        if layout == "world":
            _write_cdf(features_dir / "D3_Positions" / f"{seq}.cdf", body)
        if layout == "npz":
            npz.setdefault(f"S{subject}", {})[seq.replace("TakingPhoto", "Photo")] = body / 1000.0
        for cam in H36M_CAMERAS:
            r, t = cameras[(subject, cam)]
            camera = body @ r.T + t
            if layout == "mono":
                _write_cdf(features_dir / "D3_Positions_mono" / f"{seq}.{cam}.cdf", camera)
                if subject == 1:
                    pixels = _project(camera, intrinsics[cam]) + H36M_D2_SHIFT
                    _write_cdf(features_dir / "D2_Positions" / f"{seq}.{cam}.cdf", pixels)
            if layout == "npz" and subject == 1:
                pixels = _project(camera, intrinsics[cam]) + H36M_D2_SHIFT
                views = npz2d.setdefault("S1", {}).setdefault(
                    seq.replace("TakingPhoto", "Photo"), []
                )
                views.append(pixels[:, H36M_JOINTS17])
            for f in H36M_SAMPLED:
                path = root / f"S{subject}" / "Images" / f"{seq}.{cam}" / f"frame_{f + 1:06d}.jpg"
                write_image(path, *H36M_SIZE, seed=f)
    if layout == "npz":
        np.savez(root / "data_3d_h36m.npz", positions_3d=npz)
        np.savez(root / "data_2d_h36m_gt.npz", positions_2d=npz2d)
    corrupt_image(root / "S11" / "Images" / f"Walking 1.{H36M_CAMERAS[1]}" / "frame_000065.jpg")
    return {"world": world, "cameras": cameras, "intrinsics": intrinsics}
