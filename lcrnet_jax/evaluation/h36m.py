"""Human3.6M protocols P1, P2, P3: test frames, Abs./Align. errors and their evaluator
(LCR-Net++ Sec. 4.1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.evaluation.base import ProtocolEvaluator
from lcrnet_jax.metrics.common import as_mask, as_pair
from lcrnet_jax.metrics.pose3d import mpjpe, pa_mpjpe


@dataclasses.dataclass(frozen=True)
class H36MProtocol:
    """A Human3.6M evaluation protocol.

    Attributes:
      name: "p1", "p2" or "p3".
      train_subjects: subjects used for training.
      test_subjects: subjects used for testing.
      cameras: test cameras, 1-based in the order 54138969, 55011271, 58860488, 60457274.
      trials: test trials (sub-actions) 1 and/or 2.
      frame_step: test frames are those whose 0-based index in the 50 fps video is a
        multiple of `frame_step`.
      reported: the errors the paper reports, ("abs_mm", "align_mm") or ("align_mm",).
    """

    name: str
    train_subjects: tuple[int, ...]
    test_subjects: tuple[int, ...]
    cameras: tuple[int, ...]
    trials: tuple[int, ...]
    frame_step: int
    reported: tuple[str, ...]


H36M_PROTOCOLS: dict[str, H36MProtocol] = {
    # P1: every 64th frame of S11, camera 2 (928 frames in the paper).
    "p1": H36MProtocol("p1", (1, 5, 6, 7, 8, 9), (11,), (2,), (1, 2), 64, ("abs_mm", "align_mm")),
    # P2: every 5th frame of S9 and S11, all cameras and trials (about 110k frames).
    "p2": H36MProtocol(
        "p2", (1, 5, 6, 7, 8), (9, 11), (1, 2, 3, 4), (1, 2), 5, ("abs_mm", "align_mm")
    ),
    # P3 (Bogo et al.): as P2, "camera 3" and trial 1 only, reported after alignment.
    # Bogo et al.'s camera 3 is the frontal camera 60457274 (index 3 counted from 0; the
    # SMPLify co-authors' HMR evaluates "the frontal camera (camera 3)" on it, as SPIN's
    # preprocessing shows; 58860488 films from behind): camera 4 here.
    "p3": H36MProtocol("p3", (1, 5, 6, 7, 8), (9, 11), (4,), (1,), 5, ("align_mm",)),
}


def h36m_protocol(protocol: str | H36MProtocol) -> H36MProtocol:
    """Looks up a Human3.6M protocol by name ("p1", "p2", "p3", case-insensitive)."""
    if isinstance(protocol, H36MProtocol):
        return protocol
    try:
        return H36M_PROTOCOLS[str(protocol).lower()]
    except KeyError:
        raise ValueError(
            f"unknown Human3.6M protocol {protocol!r}; expected one of {sorted(H36M_PROTOCOLS)}"
        ) from None


def h36m_test_mask(subject, camera, trial, frame, protocol: str | H36MProtocol) -> np.ndarray:
    """Which frames belong to a protocol's test set.

    The per-frame metadata follows the Human3.6M builder: `subject` in (1, 5, 6, 7, 8,
    9, 11); `camera` 1..4 (1-based in the order 54138969, 55011271, 58860488, 60457274);
    `trial` 1 or 2 (the sub-action); `frame` the 0-based index in the original 50 fps
    video. P1 keeps S11, camera 2, frames 0, 64, 128, ...; P2 keeps S9 and S11, every
    camera and trial, frames 0, 5, 10, ...; P3 keeps the P2 frames of camera 4
    (60457274, Bogo et al.'s "camera 3"), trial 1.

    Args:
      subject, camera, trial, frame: (N,) int arrays (broadcastable).
      protocol: "p1", "p2", "p3" or an `H36MProtocol`.

    Returns:
      (N,) bool, True for test frames of the protocol.
    """
    p = h36m_protocol(protocol)
    subject, camera, trial, frame = (np.asarray(a) for a in (subject, camera, trial, frame))
    return (
        np.isin(subject, p.test_subjects)
        & np.isin(camera, p.cameras)
        & np.isin(trial, p.trials)
        & (frame % p.frame_step == 0)
    )


_H36M_KEYS = ("subject", "camera", "trial", "frame")


def h36m_errors(
    pred,
    gt,
    protocol: str | H36MProtocol,
    *,
    metadata: Mapping[str, np.ndarray] | None = None,
    visible=None,
    joint_set: str | skeleton.JointSet | None = None,
    pelvis: tuple | None = None,
    unit_scale: float = 1000.0,
) -> dict:
    """Abs. and Align. errors in mm of a Human3.6M protocol.

    "Abs." is `mpjpe` and "Align." is `pa_mpjpe`, averaged over the protocol's test
    frames with equal weight per frame. The paper reports both for P1 and P2 and only
    the aligned error for P3 (`H36MProtocol.reported`). The joints counted are those of
    the arrays given (13 or 17 in the paper) intersected with `visible`. The paper's
    per-action tables (Table 3) average the per-action means: that value is
    "action_mean_abs_mm" / "action_mean_align_mm" when `metadata` has "action".

    Args:
      pred: (N, J, 3) predicted poses.
      gt: (N, J, 3) ground-truth poses in the same joint order and unit.
      protocol: "p1", "p2", "p3" or an `H36MProtocol`.
      metadata: per-frame arrays "subject", "camera", "trial", "frame" (see
        `h36m_test_mask`) and optionally "action" (str); the frames outside the
        protocol's test set are dropped. None: every frame given is a test frame.
      visible: (N, J) bool joints to count, or None for all.
      joint_set: when given (e.g. "lcr17"), both poses are first centred on their torso
        (mean of hips and shoulders, `geometry.center_on_torso`), as LCR-Net++ predicts
        torso-centred poses; None compares them as given.
      pelvis: (pred (N, 3), gt (N, 3)) pelvis positions, in the frame of the poses given:
        adds "abs_pelvis_mm", the Abs. error with both poses centred on them.
      unit_scale: factor from the input unit to mm (1000 for metres).

    Returns:
      dict with "protocol", "num_poses", "abs_mm", "align_mm" ("abs_pelvis_mm") and,
      with actions, "per_action" ({action: {"num_poses", "abs_mm", ...}}) and the mean
      of each error over the actions, "action_mean_abs_mm", "action_mean_align_mm"
      ("action_mean_abs_pelvis_mm").
    """
    p = h36m_protocol(protocol)
    pred, gt = as_pair(pred, gt, (3,))
    if pred.ndim != 3:
        raise ValueError(f"pred and gt must have shape (N, J, 3), got {pred.shape}")
    visible = as_mask(visible, pred.shape[:-1])
    if pelvis is not None:
        pelvis = [np.asarray(x, np.float64) for x in pelvis]
        if len(pelvis) != 2 or any(x.shape != (len(pred), 3) for x in pelvis):
            shapes = [x.shape for x in pelvis]
            raise ValueError(f"pelvis must be (pred, gt) of shape ({len(pred)}, 3), got {shapes}")
    actions = None
    if metadata is not None:
        missing = [k for k in _H36M_KEYS if k not in metadata]
        if missing:
            raise ValueError(f"metadata lacks {missing}; expected keys {_H36M_KEYS} (+ 'action')")
        keep = h36m_test_mask(*(metadata[k] for k in _H36M_KEYS), p)
        if keep.shape != pred.shape[:1]:
            raise ValueError(f"metadata has {keep.shape[0]} frames, poses have {pred.shape[0]}")
        pred, gt, visible = pred[keep], gt[keep], visible[keep]
        pelvis = None if pelvis is None else [x[keep] for x in pelvis]
        if "action" in metadata:
            actions = np.asarray(metadata["action"])[keep]
    errors = {}  # name: (N,) mm per frame
    if pelvis is not None:
        errors["abs_pelvis_mm"] = (
            mpjpe(pred - pelvis[0][:, None], gt - pelvis[1][:, None], visible) * unit_scale
        )
    if joint_set is not None:
        pred = np.asarray(geometry.center_on_torso(pred, joint_set), np.float64)
        gt = np.asarray(geometry.center_on_torso(gt, joint_set), np.float64)
    errors = {
        "abs_mm": mpjpe(pred, gt, visible) * unit_scale,
        "align_mm": pa_mpjpe(pred, gt, visible) * unit_scale,
        **errors,
    }
    out = {"protocol": p.name, "num_poses": int(pred.shape[0])}
    out.update({name: float(np.mean(e)) for name, e in errors.items()})
    if actions is not None:
        per_action = {}
        for action in np.unique(actions):
            sel = actions == action
            per_action[str(action)] = {"num_poses": int(np.sum(sel))}
            per_action[str(action)].update({n: float(np.mean(e[sel])) for n, e in errors.items()})
        out["per_action"] = per_action
        for name in errors:
            out[f"action_mean_{name}"] = float(np.mean([a[name] for a in per_action.values()]))
    return out


class H36MEvaluator(ProtocolEvaluator):
    """Human3.6M P1, P2 or P3: Abs. and Align. MPJPE in mm over every test frame.

    Human3.6M has no official evaluation script: the protocols are those of the
    literature as the paper describes them (Sec. 4.1; frames and subjects as
    `H36M_PROTOCOLS`, errors as `h36m_errors`), in the model's joint set (13 or 17
    joints, both poses centred on the torso). Every test frame counts: a frame takes the
    top-scoring person of the method; where the method found nobody above its threshold
    it takes the image's highest-scoring candidate (`base.FALLBACK`), and where there is
    no candidate at all (no RoI kept) the zero pose (every joint at the torso centre),
    i.e. a large error, never a dropped frame (our choice; the paper does not say).
    "abs_mm" and "align_mm" weigh every frame alike; "action_mean_abs_mm" and
    "action_mean_align_mm" are the means of the 15 per-action errors, the "Avg." of the
    paper's Table 3, whose P2 values are Table 2's (the paper does not say how P1 and P3
    are averaged). "abs_pelvis_mm" and "action_mean_abs_pelvis_mm" are the Abs. errors
    with both poses centred on the pelvis instead, as most of the literature the paper
    compares with (Martinez et al., VideoPose3D; a model without a pelvis gets its hips'
    midpoint); the aligned errors do not depend on the centre. "detection_rate" (frames
    with a person above threshold), "fallback" and "no_candidate" (frame counts) are
    reported beside the errors.

    Args:
      source: the split's records (native Human3.6M annotations).
      joint_set: the model's joint set (`skeleton.MODEL_JOINT_SETS`).
      protocol: "p1", "p2", "p3" or an `H36MProtocol`.
    """

    records_since = ("1.1.0", "Human3.6M's own trials; P3's camera 60457274")

    def __init__(self, source, *, joint_set: str, protocol: str | H36MProtocol = "p1"):
        self.protocol = h36m_protocol(protocol)
        self.name = f"human36m/{self.protocol.name}"
        super().__init__(source, joint_set=joint_set)

    def annotation(self, record: Mapping) -> dict:
        out = {key: int(record[key]) for key in _H36M_KEYS}
        out["action"] = _text(record["action"])
        out["joints3d"] = np.asarray(record["people"]["joints3d"], np.float64)[0]  # (17, 3)
        return out

    def metrics(self, annotations: Sequence[dict], predictions: Sequence[dict]) -> dict:
        num_joints = skeleton.get_joint_set(self.joint_set).num_joints
        meta = {k: np.array([a[k] for a in annotations]) for k in (*_H36M_KEYS, "action")}
        keep = h36m_test_mask(*(meta[k] for k in _H36M_KEYS), self.protocol)
        poses, status = [], []
        for found in predictions:
            pose, kind = np.zeros((num_joints, 3)), "no_candidate"
            if len(found["scores"]):
                pose, kind = found["poses3d"][np.argmax(found["scores"])], "detected"
            elif len(found.get("fallback", {}).get("scores", ())):
                pose, kind = found["fallback"]["poses3d"][0], "fallback"
            poses.append(pose)
            status.append(kind)
        status = np.array(status)[keep]
        errors = ("abs_mm", "align_mm", "abs_pelvis_mm")
        errors += tuple(f"action_mean_{name}" for name in errors)
        out = {"num_poses": int(keep.sum()), **dict.fromkeys(errors, np.nan)}
        if keep.any():
            native = np.stack([a["joints3d"] for a in annotations])[keep]
            gt, known = skeleton.convert(native, None, "h36m17", self.joint_set)
            pred = np.stack(poses)[keep]
            pelvis = (
                skeleton.made_joint(pred, self.joint_set, "pelvis"),
                native[:, skeleton.H36M17.index("pelvis")],
            )
            found = h36m_errors(
                pred, gt, self.protocol, visible=known, joint_set=self.joint_set, pelvis=pelvis,
                metadata={k: v[keep] for k, v in meta.items()},
            )  # fmt: skip
            out.update({name: found[name] for name in errors})
        with np.errstate(invalid="ignore", divide="ignore"):
            out["detection_rate"] = np.float64(np.sum(status == "detected")) / len(status)
        out["fallback"] = int(np.sum(status == "fallback"))
        out["no_candidate"] = int(np.sum(status == "no_candidate"))
        return out


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
