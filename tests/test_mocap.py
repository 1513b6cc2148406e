import re

import numpy as np
import pytest

from lcrnet_jax import skeleton
from lcrnet_jax.data import mocap
from tests import fake_datasets as fake

J = skeleton.LCR17.index


def _still_motion(num_frames=1):
    motion = {name: np.zeros((num_frames, 3)) for name, *_ in fake.MOCAP_BONES}
    motion["root"] = np.tile([1.0, 10.0, 2.0, 0.0, 0.0, 0.0], (num_frames, 1))
    return motion


def test_rest_pose_joints_by_hand(tmp_path):
    fake.write_asf(tmp_path / "s.asf")
    fake.write_amc(tmp_path / "s.amc", _still_motion())
    pose = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc", scale=1.0)[0]
    # World (Y up) root at (1, 10, 2); output Y down: (x, y, z) -> (x, -y, -z).
    expected = {
        "pelvis": (1, 10, 2),
        "left_hip": (2, 10, 2),
        "left_knee": (2, 6, 2),
        "left_ankle": (2, 2, 2),
        "right_hip": (0, 10, 2),
        "right_ankle": (0, 2, 2),
        "spine": (1, 12, 2),
        "thorax": (1, 15, 2),
        "neck": (1, 15.5, 2),
        "head": (1, 16.5, 2),
        "left_shoulder": (2.5, 15, 2),
        "left_elbow": (2.5, 12, 2),
        "left_wrist": (2.5, 9.5, 2),
        "right_shoulder": (-0.5, 15, 2),
        "right_wrist": (-0.5, 9.5, 2),
    }
    for name, (x, y, z) in expected.items():
        np.testing.assert_allclose(pose[J(name)], [x, -y, -z], atol=1e-5, err_msg=name)
    # The person's left is on +X: a person facing the camera shows it on the image right.
    assert pose[J("left_hip"), 0] > pose[J("right_hip"), 0]
    assert pose[J("head"), 1] < pose[J("pelvis"), 1] < pose[J("left_ankle"), 1]


def test_the_pelvis_lies_between_the_hips_not_at_the_root(tmp_path):
    """LCR-17's pelvis is Human3.6M's root, the hips' midpoint: with the hip joints
    tilted 30 degrees down from a root at (1, 10, 2), 0.5 below it, in both readers."""
    motion = _still_motion()
    motion["lhipjoint"][0] = [0.0, 0.0, -30.0]  # (1, 0, 0) -> (0.866, -0.5, 0)
    motion["rhipjoint"][0] = [0.0, 0.0, 30.0]  # (-1, 0, 0) -> (-0.866, -0.5, 0)
    fake.write_asf(tmp_path / "s.asf")
    fake.write_amc(tmp_path / "s.amc", motion)
    fake.write_bvh(tmp_path / "s.bvh", fake.with_reference_frame(motion))
    from_amc = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc", scale=1.0)[0]
    from_bvh = mocap.read_bvh(tmp_path / "s.bvh", scale=1.0)[0]
    for pose in (from_amc, from_bvh):
        np.testing.assert_allclose(pose[J("pelvis")], [1, -9.5, -2], atol=1e-5)
        np.testing.assert_allclose(pose[J("left_hip")], [1 + 0.75**0.5, -9.5, -2], atol=1e-5)


def test_asf_rotations_by_hand(tmp_path):
    motion = _still_motion()
    motion["lfemur"][0] = [90.0, 0.0, 0.0]  # thigh (0, -1, 0) about X -> (0, 0, -1)
    # rclavicle's local frame is turned 90 degrees about Z, so its rx turns about world Y:
    # the clavicle (-1, 0, 0) -> (0, 0, 1) under +90 degrees about Y.
    motion["rclavicle"][0] = [90.0, 0.0, 0.0]
    fake.write_asf(tmp_path / "s.asf", axes={"rclavicle": (0.0, 0.0, 90.0)})
    fake.write_amc(tmp_path / "s.amc", motion)
    pose = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc", scale=1.0)[0]
    np.testing.assert_allclose(pose[J("left_knee")], [2, -10, -2 + 4], atol=1e-5)
    np.testing.assert_allclose(pose[J("right_shoulder")], [1, -15, -2 - 1.5], atol=1e-5)


def test_asf_rotations_of_two_axes_turn_about_fixed_axes_x_first(tmp_path):
    """ASF/AMC angles rx, ry turn about the fixed axes, rx first (R = Ry Rx): the thigh
    (0, -1, 0) goes to (0, 0, -1) about X, then to (-1, 0, 0) about Y. About moving axes
    (R = Rx Ry) it would stay along Z."""
    motion = _still_motion()
    motion["lfemur"][0] = [90.0, 90.0, 0.0]
    fake.write_asf(tmp_path / "s.asf")
    fake.write_amc(tmp_path / "s.amc", motion)
    pose = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc", scale=1.0)[0]
    hip = np.array([2.0, 10.0, 2.0])  # world, Y up
    knee = hip + 4 * np.array([-1.0, 0.0, 0.0])
    np.testing.assert_allclose(pose[J("left_knee")], knee * [1, -1, -1], atol=1e-5)


def test_asf_angles_in_radians(tmp_path):
    """`:units angle rad`: the AMC's angles (and the ASF's axes) are radians."""
    motion = _still_motion()
    motion["lfemur"][0] = [np.pi / 2, 0.0, 0.0]  # the thigh about X, as 90 degrees
    fake.write_asf(tmp_path / "s.asf")
    text = (tmp_path / "s.asf").read_text()
    (tmp_path / "s.asf").write_text(text.replace("angle deg", "angle rad"))
    fake.write_amc(tmp_path / "s.amc", motion)
    pose = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc", scale=1.0)[0]
    np.testing.assert_allclose(pose[J("left_knee")], [2, -10, -2 + 4], atol=1e-5)


def test_bvh_and_asf_amc_of_the_same_motion_agree(tmp_path):
    motion = fake.mocap_motion(7, seed=3)
    fake.write_asf(tmp_path / "s.asf")
    fake.write_amc(tmp_path / "s.amc", motion)
    # As CMU's conversions: BVH frame i + 1 is AMC frame i (numbered i + 1 in the AMC).
    fake.write_bvh(tmp_path / "s.bvh", fake.with_reference_frame(motion))
    from_amc = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "s.amc")
    from_bvh = mocap.read_bvh(tmp_path / "s.bvh")
    assert from_amc.shape == (7, 17, 3) and from_amc.dtype == np.float32
    np.testing.assert_allclose(from_bvh, from_amc, atol=1e-4)
    hips = from_amc[:, [J("left_hip"), J("right_hip")]].mean(axis=1)
    np.testing.assert_allclose(from_amc[:, J("pelvis")], hips, atol=1e-6)
    # Bone lengths survive any motion: thigh 4 units of 0.45 ASF units per inch (CMU).
    thigh = np.linalg.norm(from_amc[:, J("left_knee")] - from_amc[:, J("left_hip")], axis=-1)
    np.testing.assert_allclose(thigh, 4 * mocap.CMU_SCALE, rtol=1e-5)
    np.testing.assert_allclose(
        mocap.read_bvh(tmp_path / "s.bvh", frame_step=3), from_bvh[::3], atol=1e-6
    )


def test_bvh_reference_t_pose_is_dropped(tmp_path):
    motion = fake.mocap_motion(7, seed=4)
    with_reference = fake.with_reference_frame(motion)
    fake.write_bvh(tmp_path / "cmu.bvh", with_reference)
    fake.write_bvh(tmp_path / "plain.bvh", motion)
    fake.write_bvh(tmp_path / "t_pose.bvh", {k: v[:1] for k, v in with_reference.items()})
    plain = mocap.read_bvh(tmp_path / "plain.bvh")
    t_pose = mocap.read_bvh(tmp_path / "t_pose.bvh")[0]
    assert plain.shape[0] == 7  # frame 0 has a root rotation: captured motion, kept
    np.testing.assert_allclose(t_pose[J("left_wrist"), 1], t_pose[J("left_shoulder"), 1], atol=1e-6)
    for step in (1, 3):
        poses = mocap.read_bvh(tmp_path / "cmu.bvh", frame_step=step)
        np.testing.assert_allclose(poses, plain[::step], atol=1e-6)
        assert not np.isclose(poses, t_pose, atol=1e-3).all(axis=(1, 2)).any()
    # A still root that moves by frame 1 is not the reference frame.
    with_reference["root"][0, 0] += 1.0
    fake.write_bvh(tmp_path / "moved.bvh", with_reference)
    assert mocap.read_bvh(tmp_path / "moved.bvh").shape[0] == 8


def test_malformed_files_name_the_file(tmp_path):
    fake.write_bvh(tmp_path / "s.bvh", fake.mocap_motion(2))
    text = (tmp_path / "s.bvh").read_text()
    (tmp_path / "short.bvh").write_text(text.rsplit("\n", 2)[0])
    with pytest.raises(ValueError, match="short.bvh has .* motion values, expected 2 frames"):
        mocap.read_bvh(tmp_path / "short.bvh")
    (tmp_path / "nohead.bvh").write_text(text.replace("Head", "Skull"))
    with pytest.raises(ValueError, match="nohead.bvh has no joint 'head'"):
        mocap.read_bvh(tmp_path / "nohead.bvh")
    (tmp_path / "bad.asf").write_text(":units\n length 1\n")
    (tmp_path / "x.amc").write_text("1\nroot 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match="bad.asf has no :root section"):
        mocap.read_asf_amc(tmp_path / "bad.asf", tmp_path / "x.amc")
    with pytest.raises(FileNotFoundError):
        mocap.read_bvh(tmp_path / "absent.bvh")


_BVH = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  End Site
  {
    OFFSET 0 1 0
  }
}
MOTION
Frames: 1
Frame Time: 0.008333
0 10 0 0 0 0
"""


@pytest.mark.parametrize(
    "old, new, problem",
    [
        ("MOTION", "MOVES", "has no MOTION section"),
        ("HIERARCHY", "SKELETON", "does not start with HIERARCHY"),
        ("ROOT Hips", "BONE Hips", "has a malformed HIERARCHY: unexpected token 'BONE'"),
        ("  }\n}\n", "  }\n", "has an unbalanced or empty HIERARCHY"),
        ("Frames: 1", "Frame count 1", "lacks 'Frames:' / 'Frame Time:' after MOTION"),
        ("0 10 0 0 0 0", "0 10 0 0 0 zero", "has non-numeric motion values"),
    ],
)
def test_malformed_bvh_names_the_file_and_the_problem(tmp_path, old, new, problem):
    path = tmp_path / "bad.bvh"
    assert old in _BVH
    path.write_text(_BVH.replace(old, new, 1))
    with pytest.raises(ValueError, match=f"^{re.escape(f'BVH file {path} {problem}')}$"):
        mocap.read_bvh(path)


@pytest.mark.parametrize(
    "amc, problem",
    [
        ("root 0 10 0 0 0 0\n1\n", "has values before its first frame number"),
        ("1\nroot 0 10 0 0 0 zero\n", "has non-numeric values: 'root 0 10 0 0 0 zero'"),
        (":FULLY-SPECIFIED\n# comment\n", "has no frames"),
        ("1\nroot 0 10 0 0 0 0\nlfemur 1 2\n", ": bone 'lfemur' needs 3 values per frame"),
    ],
)
def test_malformed_amc_names_the_file_and_the_problem(tmp_path, amc, problem):
    fake.write_asf(tmp_path / "s.asf")
    path = tmp_path / "bad.amc"
    path.write_text(amc)
    sep = "" if problem.startswith(":") else " "
    with pytest.raises(ValueError, match=f"^{re.escape(f'AMC file {path}{sep}{problem}')}$"):
        mocap.read_asf_amc(tmp_path / "s.asf", path)


def test_the_hand_written_bvh_and_amc_of_the_malformed_cases_parse_when_intact(tmp_path):
    """The cases above differ from these files by the one damage they name."""
    joints, values = mocap._parse_bvh(_BVH, "ok.bvh")
    assert [j.name for j in joints] == ["Hips"] and values.shape == (1, 6)
    fake.write_asf(tmp_path / "s.asf")
    (tmp_path / "ok.amc").write_text("1\nroot 0 10 0 0 0 0\nlfemur 1 2 3\n")
    poses = mocap.read_asf_amc(tmp_path / "s.asf", tmp_path / "ok.amc")
    assert poses.shape == (1, 17, 3)


def test_asf_angles_in_radians_and_another_root_order_read_the_same_motion(tmp_path):
    """ASF's `:units angle rad` makes the AMC's angles radians, and `:root order` lists
    the root's AMC values in its own order: the same motion written so reads the same."""
    motion = fake.mocap_motion(3, 0)
    fake.write_asf(tmp_path / "deg.asf")
    fake.write_amc(tmp_path / "deg.amc", motion)
    reference = mocap.read_asf_amc(tmp_path / "deg.asf", tmp_path / "deg.amc")
    asf = (tmp_path / "deg.asf").read_text()
    assert "  angle deg\n" in asf and "order TX TY TZ RX RY RZ\n" in asf

    (tmp_path / "rad.asf").write_text(asf.replace("  angle deg\n", "  angle rad\n"))
    radians = {name: np.deg2rad(values) for name, values in motion.items()}
    radians["root"] = np.concatenate([motion["root"][:, :3], radians["root"][:, 3:]], 1)
    fake.write_amc(tmp_path / "rad.amc", radians)
    np.testing.assert_allclose(
        mocap.read_asf_amc(tmp_path / "rad.asf", tmp_path / "rad.amc"), reference, atol=1e-4
    )

    # Translations in another order (the rotations keep theirs, which sets their order).
    order = asf.replace("order TX TY TZ RX RY RZ\n", "order TZ TX TY RX RY RZ\n")
    (tmp_path / "order.asf").write_text(order)
    fake.write_amc(tmp_path / "order.amc", dict(motion, root=motion["root"][:, [2, 0, 1, 3, 4, 5]]))
    np.testing.assert_allclose(
        mocap.read_asf_amc(tmp_path / "order.asf", tmp_path / "order.amc"), reference, atol=1e-5
    )


def test_bvh_joint_names_match_after_a_prefix(tmp_path):
    """Mixamo-style "mixamorig:LeftUpLeg" names are matched after the prefix."""
    motion = fake.mocap_motion(3, 0)
    fake.write_bvh(tmp_path / "plain.bvh", motion)
    text = (tmp_path / "plain.bvh").read_text()
    prefixed = re.sub(r"\b(ROOT|JOINT) (\S+)", r"\1 mixamorig:\2", text)
    assert prefixed.count("mixamorig:") == text.count("JOINT ") + 1
    (tmp_path / "prefixed.bvh").write_text(prefixed)
    np.testing.assert_array_equal(
        mocap.read_bvh(tmp_path / "prefixed.bvh"), mocap.read_bvh(tmp_path / "plain.bvh")
    )
