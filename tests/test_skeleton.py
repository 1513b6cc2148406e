import jax
import numpy as np
import pytest

from lcrnet_jax import skeleton


@pytest.mark.parametrize("name", sorted(skeleton.JOINT_SETS))
def test_flip_permutation_is_an_involution_that_swaps_sides(name):
    js = skeleton.get_joint_set(name)
    perm = np.array(js.flip_permutation)
    np.testing.assert_array_equal(perm[perm], np.arange(js.num_joints))
    for i, j in enumerate(perm):
        a, b = js.joints[i], js.joints[j]
        if a.startswith("left_"):
            assert b == "right_" + a[5:]
        elif not a.startswith("right_"):
            assert i == j


@pytest.mark.parametrize("name", sorted(skeleton.JOINT_SETS))
def test_bones_are_valid_and_unique(name):
    js = skeleton.get_joint_set(name)
    assert len(set(js.joints)) == js.num_joints
    assert len(set(js.bones)) == len(js.bones) > 0
    for a, b in js.bones:
        assert 0 <= a < js.num_joints and 0 <= b < js.num_joints and a != b


def test_lcr13_order_matches_the_original():
    js = skeleton.LCR13
    assert js.joints[0] == "right_ankle" and js.joints[12] == "head"
    assert js.joints[10] == "right_shoulder" and js.joints[7] == "left_wrist"
    assert js.torso == (4, 5, 10, 11)
    assert js.lower_limbs == (0, 1, 2, 3)
    assert js.upper_body == tuple(range(4, 13))
    assert skeleton.LCR17.joints[:13] == js.joints
    assert skeleton.LCR17.joints[13:] == ("pelvis", "spine", "thorax", "neck")


# Each dataset's joints in its official order, written out (names in our vocabulary).
_OFFICIAL_ORDERS = {
    # COCO person keypoints: `categories[0]["keypoints"]` of person_keypoints_*.json.
    "coco17": (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
        "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    # Human3.6M's 32 recorded joints 0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25,
    # 26, 27 (Martinez et al. 2017, VideoPose3D): Hip, RHip, RKnee, RFoot, LHip, LKnee,
    # LFoot, Spine, Thorax, Neck/Nose, Head, LShoulder, LElbow, LWrist, RShoulder, RElbow,
    # RWrist.
    "h36m17": (
        "pelvis", "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle", "spine", "thorax", "neck", "head",
        "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    # MPII Human Pose joint ids 0-15 (`annopoints.point.id`).
    "mpii16": (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "pelvis", "thorax", "upper_neck", "head_top",
        "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist",
    ),
    # LSP / LSP-extended `joints.mat`: R ankle, R knee, R hip, L hip, L knee, L ankle,
    # R wrist, R elbow, R shoulder, L shoulder, L elbow, L wrist, Neck, Head top.
    "lsp14": (
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle",
        "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
    ),
    # MPI-INF-3DHP / MuPoTS-3D 17 joints (`mpii_get_joint_set('relavant')`): head_top,
    # neck, ..., pelvis, spine, head; their "neck" is our "thorax" (skeleton.py).
    "mupots17": (
        "head_top", "thorax",
        "right_shoulder", "right_elbow", "right_wrist",
        "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle",
        "left_hip", "left_knee", "left_ankle", "pelvis", "spine", "head",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(_OFFICIAL_ORDERS))
def test_dataset_joint_orders_match_the_official_ones(name):
    """A left/right swap in a dataset's table would mirror its records consistently (the
    flips and the fake datasets derive from the table), so each order is pinned here."""
    assert skeleton.get_joint_set(name).joints == _OFFICIAL_ORDERS[name]


def test_unknown_names_give_clear_errors():
    with pytest.raises(ValueError, match="known"):
        skeleton.get_joint_set("lcr15")
    with pytest.raises(ValueError, match="no joint 'nose'"):
        skeleton.LCR13.index("nose")
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, D\)"):
        skeleton.convert(np.zeros((13, 2)), None, "coco17")


def test_mpii_to_lcr_keeps_visibility_and_builds_the_head():
    js = skeleton.MPII16
    joints = np.arange(16 * 2, dtype=np.float32).reshape(16, 2)
    visible = np.ones(16, bool)
    visible[js.index("left_knee")] = False
    out, vis = skeleton.convert(joints, visible, "mpii16", "lcr13")
    lcr = skeleton.LCR13
    np.testing.assert_array_equal(out[lcr.index("right_wrist")], joints[js.index("right_wrist")])
    assert not vis[lcr.index("left_knee")] and np.all(out[lcr.index("left_knee")] == 0)
    head = 0.5 * (joints[js.index("upper_neck")] + joints[js.index("head_top")])
    np.testing.assert_allclose(out[lcr.index("head")], head)
    assert vis.sum() == 12
    # The head needs both of its source joints.
    visible[js.index("head_top")] = False
    _, vis = skeleton.convert(joints, visible, "mpii16", "lcr14")
    assert not vis[lcr.index("head")] and not vis[13]


def test_lsp_head_and_mpii_neck_and_spine_follow_the_documented_rules():
    """Written out by hand (not read from `_RULES`): LSP's head is the midpoint of its
    neck and head top; MPII's LCR-17 neck is its upper neck, its spine the midpoint of
    pelvis and thorax."""
    lsp = skeleton.LSP14
    joints = np.arange(14 * 2, dtype=np.float32).reshape(14, 2) * [1, 3]
    visible = np.ones(14, bool)
    out, vis = skeleton.convert(joints, visible, "lsp14", "lcr13")
    head = skeleton.LCR13.index("head")
    np.testing.assert_allclose(
        out[head], 0.5 * (joints[lsp.index("neck")] + joints[lsp.index("head_top")])
    )
    assert vis.all()
    visible[lsp.index("head_top")] = False
    _, vis = skeleton.convert(joints, visible, "lsp14", "lcr13")
    assert not vis[head] and vis.sum() == 12

    mpii, lcr17 = skeleton.MPII16, skeleton.LCR17
    joints = np.arange(16 * 2, dtype=np.float32).reshape(16, 2) ** 1.5
    out, vis = skeleton.convert(joints, None, "mpii16", "lcr17")
    assert vis.all()
    for name in ("pelvis", "thorax"):
        np.testing.assert_array_equal(out[lcr17.index(name)], joints[mpii.index(name)])
    np.testing.assert_array_equal(out[lcr17.index("neck")], joints[mpii.index("upper_neck")])
    spine = 0.5 * (joints[mpii.index("pelvis")] + joints[mpii.index("thorax")])
    np.testing.assert_allclose(out[lcr17.index("spine")], spine, rtol=1e-6)


def test_coco_head_rule_falls_back_in_order():
    js = skeleton.COCO17
    joints = np.zeros((4, 17, 2), np.float32)
    for name, xy in [
        ("left_ear", (10, 0)),
        ("right_ear", (20, 0)),
        ("left_eye", (14, 4)),
        ("right_eye", (16, 4)),
        ("nose", (15, 8)),
    ]:
        joints[:, js.index(name)] = xy
    visible = np.ones((4, 17), bool)
    visible[1, js.index("right_ear")] = False  # -> eyes
    visible[2, [js.index(n) for n in ("left_ear", "right_ear", "left_eye")]] = False  # -> nose
    visible[3, :5] = False  # no face at all
    out, vis = skeleton.convert(joints, visible, "coco17", "lcr13")
    head = skeleton.LCR13.index("head")
    np.testing.assert_allclose(out[:3, head], [[15, 0], [15, 4], [15, 8]])
    np.testing.assert_array_equal(vis[:, head], [True, True, True, False])


@pytest.mark.parametrize("src", ["h36m17", "mupots17", "lsp14", "mpii16", "coco17"])
def test_every_dataset_gives_the_lcr13_limbs(src):
    js = skeleton.get_joint_set(src)
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(3, js.num_joints, 3))
    out, vis = skeleton.convert(joints, None, src, "lcr13")
    assert out.shape == (3, 13, 3) and vis.all()
    for name in skeleton.LCR13.joints[:12]:
        np.testing.assert_array_equal(out[:, skeleton.LCR13.index(name)], joints[:, js.index(name)])


def test_lcr17_from_h36m_and_back_to_lcr13():
    joints = np.random.default_rng(1).normal(size=(17, 3))
    lcr17, vis = skeleton.convert(joints, None, "h36m17", "lcr17")
    assert vis.all()
    np.testing.assert_array_equal(lcr17[13], joints[0])  # pelvis
    lcr13, vis13 = skeleton.convert(lcr17, vis, "lcr17", "lcr13")
    np.testing.assert_array_equal(lcr13, lcr17[:13])


def convert_by_rules(joints, visible, src, dst):
    """`skeleton.convert` as its docstring says it, a loop over target joints and their
    rules' alternatives: the reference of its gathers."""
    src, dst = skeleton.get_joint_set(src), skeleton.get_joint_set(dst)
    out = np.zeros(joints.shape[:-2] + (dst.num_joints, joints.shape[-1]), joints.dtype)
    out_visible = np.zeros(joints.shape[:-2] + (dst.num_joints,), bool)
    for j, name in enumerate(dst.joints):
        for alternative in skeleton._rule(src, name) or ():
            idx = list(src.indices(alternative))
            ok = visible[..., idx].all(axis=-1) & ~out_visible[..., j]
            out[..., j, :] = np.where(ok[..., None], joints[..., idx, :].mean(-2), out[..., j, :])
            out_visible[..., j] |= ok
    return out, out_visible


@pytest.mark.parametrize("src", sorted(skeleton.JOINT_SETS))
@pytest.mark.parametrize("dst", sorted(skeleton.JOINT_SETS))
def test_convert_equals_the_rules_joint_by_joint(src, dst):
    rng = np.random.default_rng(2)
    joints = rng.normal(size=(4, skeleton.get_joint_set(src).num_joints, 2)).astype(np.float32)
    visible = rng.random(joints.shape[:-1]) < 0.7
    fast = skeleton.convert(joints, visible, src, dst)
    rules = convert_by_rules(joints, visible, src, dst)
    for got, want in zip(fast, rules, strict=True):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_convert_gathers_hold_every_alternative():
    """(alternatives, target joints, joints averaged at most) of each conversion."""
    js = skeleton.get_joint_set
    assert skeleton._gathers(js("lcr17"), js("lcr13"))[0].shape == (1, 13, 1)  # one gather
    assert skeleton._gathers(js("h36m17"), js("lcr13"))[0].shape == (1, 13, 1)
    assert skeleton._gathers(js("mpii16"), js("lcr13"))[0].shape == (1, 13, 2)  # a midpoint
    assert skeleton._gathers(js("coco17"), js("lcr13"))[0].shape == (5, 13, 2)  # head rules


def test_head_top_extrapolation_is_along_the_neck_head_line():
    pose = np.zeros((13, 3))
    pose[10] = [-0.2, -0.4, 0]
    pose[11] = [0.2, -0.4, 0]
    pose[12] = [0.0, -0.7, 0]
    out = skeleton.complete(pose, "lcr13", "lcr14")
    assert out.shape == (14, 3)
    np.testing.assert_array_equal(out[:13], pose)
    np.testing.assert_allclose(out[13], [0, -0.85, 0])
    # MPII-14's upper neck: as far below the head centre as the head top is above it,
    # LCR-17's own neck when the model has one.
    mpii14 = skeleton.complete(pose, "lcr13", "mpii14")
    np.testing.assert_array_equal(mpii14[:12], pose[:12])
    np.testing.assert_allclose(mpii14[12:], [[0, -0.55, 0], [0, -0.85, 0]])
    lcr17 = np.concatenate([pose, np.full((4, 3), 9.0)])
    np.testing.assert_allclose(skeleton.complete(lcr17, "lcr17", "mpii14")[12], [9, 9, 9])
    lcr_mupots = np.concatenate([pose, np.full((4, 3), 9.0)])  # its own head top: 9, 9, 9
    np.testing.assert_allclose(
        skeleton.complete(lcr_mupots, "lcr_mupots", "mpii14")[12:], [2 * pose[12] - 9, [9, 9, 9]]
    )
    # One joint, the model's own or made.
    np.testing.assert_allclose(skeleton.made_joint(pose, "lcr13", "pelvis"), pose[4:6].mean(0))
    np.testing.assert_allclose(skeleton.made_joint(lcr17, "lcr17", "pelvis"), [9, 9, 9])


def test_mpii_and_lsp_annotations_give_their_official_14_joints():
    rng = np.random.default_rng(1)
    mpii16, lsp14 = rng.normal(size=(16, 2)), rng.normal(size=(14, 2))
    names = skeleton.MPII14.joints
    out, visible = skeleton.convert(mpii16, None, "mpii16", "mpii14")
    np.testing.assert_array_equal(out, mpii16[list(skeleton.MPII16.indices(names))])
    assert visible.all()
    out, _ = skeleton.convert(lsp14, None, "lsp14", "mpii14")
    lsp_names = names[:12] + ("neck", "head_top")
    np.testing.assert_array_equal(out, lsp14[list(skeleton.LSP14.indices(lsp_names))])


def test_completion_copies_named_joints_and_makes_the_others_by_their_rules():
    rng = np.random.default_rng(0)
    lcr13 = rng.normal(size=(4, 13, 2))
    out = skeleton.complete(lcr13, "lcr13", "lcr_mupots")
    joint = skeleton.LCR_MUPOTS.index
    np.testing.assert_array_equal(out[:, :13], lcr13)  # LCR-MuPoTS starts with LCR-13
    np.testing.assert_allclose(out[:, joint("thorax")], lcr13[:, 10:12].mean(1))
    np.testing.assert_allclose(out[:, joint("pelvis")], lcr13[:, 4:6].mean(1))
    np.testing.assert_allclose(out[:, joint("spine")], lcr13[:, [4, 5, 10, 11]].mean(1))
    lcr14 = skeleton.complete(lcr13, "lcr13", "lcr14")
    np.testing.assert_allclose(out[:, joint("head_top")], lcr14[:, 13])
    # Every row sums to 1: completing commutes with moving and scaling the poses.
    moved = skeleton.complete(3 * lcr13 + 5, "lcr13", "lcr_mupots")
    np.testing.assert_allclose(moved, 3 * out + 5)
    # A joint set's own joints are copied, whatever their order.
    np.testing.assert_allclose(skeleton.complete(out, "lcr_mupots", "lcr13"), lcr13)
    with pytest.raises(ValueError, match=r"'lcr13' cannot make the 'lcr17' joints \['neck'\]"):
        skeleton.completion_matrix("lcr13", "lcr17")
    with pytest.raises(ValueError, match=r"poses must have shape \(\.\.\., 13, D\)"):
        skeleton.complete(out, "lcr13", "lcr14")


def test_flip_twice_is_identity_and_mirrors_coordinates():
    rng = np.random.default_rng(2)
    pose2d = rng.uniform(0, 100, size=(2, 13, 2))
    once = skeleton.flip_poses(pose2d, "lcr13", image_width=100)
    np.testing.assert_allclose(once[:, 1, 0], 100 - pose2d[:, 0, 0])
    np.testing.assert_allclose(skeleton.flip_poses(once, "lcr13", image_width=100), pose2d)
    pose3d = rng.normal(size=(13, 3))
    twice = skeleton.flip_poses(skeleton.flip_poses(pose3d, "lcr13"), "lcr13")
    np.testing.assert_allclose(twice, pose3d)
    with pytest.raises(ValueError, match=r"poses must have shape \(\.\.\., 13, D\) for 'lcr13'"):
        skeleton.flip_poses(np.zeros((1, 17, 2)), "lcr13", image_width=100)  # dropped 4 joints


def test_convert_gives_float_midpoints_of_integer_pixels():
    # COCO's JSON keypoints are integers: the head between the ears at (10, 10) and (11, 11).
    coco = np.zeros((17, 2), np.int64)
    coco[[3, 4]] = [[10, 10], [11, 11]]
    visible = np.zeros(17, bool)
    visible[[3, 4]] = True
    joints, _ = skeleton.convert(coco, visible, "coco17", "lcr13")
    head = skeleton.get_joint_set("lcr13").index("head")
    assert joints.dtype == np.float32
    np.testing.assert_allclose(joints[head], [10.5, 10.5])


def test_flip_poses_under_jit_with_a_width_per_image():
    poses = np.random.default_rng(3).uniform(0, 80, size=(2, 4, 13, 2)).astype(np.float32)
    widths = np.asarray([80.0, 50.0], np.float32)
    flip = jax.jit(lambda p, w: skeleton.flip_poses(p, "lcr13", image_width=w[:, None, None, None]))
    out = np.asarray(flip(poses, widths))
    for b in range(2):
        np.testing.assert_allclose(
            out[b], skeleton.flip_poses(poses[b], "lcr13", image_width=widths[b])
        )
