import numpy as np
import pytest

from lcrnet_jax import geometry, skeleton
from lcrnet_jax.data import poses

J = {name: i for i, name in enumerate(skeleton.LCR17.joints)}


@pytest.fixture(scope="module")
def sample():
    return poses.sample_poses(np.random.default_rng(0), 1400)


def _family(sample, name):
    return sample.poses[sample.families == poses.FAMILIES.index(name)]


def test_sampling_is_deterministic_for_a_seed():
    a = poses.sample_poses(np.random.default_rng(5), 20)
    b = poses.sample_poses(np.random.default_rng(5), 20)
    c = poses.sample_poses(np.random.default_rng(6), 20)
    np.testing.assert_array_equal(a.poses, b.poses)
    np.testing.assert_array_equal(a.families, b.families)
    assert not np.allclose(a.poses, c.poses)


def test_poses_are_lcr17_torso_centred_metres(sample):
    assert sample.poses.shape == (1400, 17, 3) and sample.poses.dtype == np.float32
    assert np.isfinite(sample.poses).all()
    np.testing.assert_allclose(geometry.torso_center(sample.poses, "lcr17"), 0.0, atol=1e-5)
    assert set(np.unique(sample.families)) == set(range(len(poses.FAMILIES)))
    assert ((sample.heights >= 1.45) & (sample.heights <= 2.0)).all()


def test_bone_lengths_scale_with_height_and_match_left_right(sample):
    def bone(a, b):
        return np.linalg.norm(sample.poses[:, J[a]] - sample.poses[:, J[b]], axis=-1)

    for upper, lower in (("hip", "knee"), ("knee", "ankle"), ("shoulder", "elbow")):
        right, left = (
            bone(f"right_{upper}", f"right_{lower}"),
            bone(f"left_{upper}", f"left_{lower}"),
        )
        np.testing.assert_allclose(right, left, rtol=1e-4)
    ratio = bone("right_hip", "right_knee") / sample.heights
    assert abs(np.median(ratio) - poses.BONE_FRACTIONS["thigh"]) < 0.005
    assert 0.005 < ratio.std() < 0.03  # jittered proportions, not wild ones


def test_joint_angles_respect_the_limits(sample):
    for d, dof in enumerate(poses.DOFS):
        lo, hi = poses.JOINT_LIMITS[dof if dof in poses.TRUNK_DOFS else dof[:-2]]
        assert lo <= sample.angles[:, d].min() and sample.angles[:, d].max() <= hi, dof


def test_zero_angles_stand_upright_facing_minus_z():
    bones = {k: np.array([1.75 * v]) for k, v in poses.BONE_FRACTIONS.items()}
    pose = poses.forward_kinematics(np.zeros((1, len(poses.DOFS))), bones)[0]
    assert pose[J["head"], 1] < pose[J["thorax"], 1] < pose[J["pelvis"], 1]
    assert pose[J["pelvis"], 1] < pose[J["left_knee"], 1] < pose[J["left_ankle"], 1]
    assert pose[J["left_hip"], 0] > 0 > pose[J["right_hip"], 0]  # body frame X = left
    np.testing.assert_allclose(pose[:, 2], 0.0, atol=1e-6)
    # Flexing the left elbow brings the left wrist to the front (-Z) only.
    angles = np.zeros((1, len(poses.DOFS)))
    angles[0, poses.DOFS.index("elbow_flex_l")] = 90
    bent = poses.forward_kinematics(angles, bones)[0]
    assert bent[J["left_wrist"], 2] < -0.2 and bent[J["right_wrist"], 2] == pytest.approx(0.0)


def test_families_look_like_their_names(sample):
    standing, sitting = _family(sample, "standing"), _family(sample, "sitting")
    # Upright: the head is above the hips and the ankles below the knees.
    assert (standing[:, J["head"], 1] < standing[:, J["right_hip"], 1]).all()
    assert (standing[:, J["right_ankle"], 1] > standing[:, J["right_knee"], 1] + 0.3).all()
    # Sitting: thighs about horizontal and pointing forward.
    drop = sitting[:, J["right_knee"], 1] - sitting[:, J["right_hip"], 1]
    assert np.abs(np.median(drop)) < 0.1
    assert (sitting[:, J["right_knee"], 2] < sitting[:, J["right_hip"], 2] - 0.2).all()
    arms_up = _family(sample, "arms_up")
    wrist_y = arms_up[:, [J["right_wrist"], J["left_wrist"]], 1].min(-1)
    assert (wrist_y < arms_up[:, J["head"], 1]).mean() > 0.9
    bending = _family(sample, "bending")
    lean = np.linalg.norm(
        bending[:, J["thorax"], [0, 2]] - bending[:, J["pelvis"], [0, 2]], axis=-1
    )
    assert np.median(lean) > 0.2
    crouch, stand = _family(sample, "crouching"), standing
    span = lambda p: p[..., 1].max(-1) - p[..., 1].min(-1)  # noqa: E731
    assert np.median(span(crouch)) < 0.7 * np.median(span(stand))


def test_family_subset_and_bad_arguments():
    only = poses.sample_poses(np.random.default_rng(1), 30, families=("walking", "kneeling"))
    assert set(only.families) <= {poses.FAMILIES.index("walking"), poses.FAMILIES.index("kneeling")}
    assert poses.sample_poses(np.random.default_rng(1), 0).poses.shape == (0, 17, 3)
    with pytest.raises(ValueError, match="families"):
        poses.sample_poses(np.random.default_rng(1), 3, families=("dancing",))
    with pytest.raises(ValueError, match="family_weights"):
        poses.sample_poses(
            np.random.default_rng(1), 3, families=("walking",), family_weights=(1, 2)
        )
    with pytest.raises(ValueError, match="angles"):
        poses.forward_kinematics(np.zeros((2, 5)), {})


def test_random_orientations_turn_about_the_vertical():
    rot = poses.random_orientations(np.random.default_rng(0), 64)
    np.testing.assert_allclose(
        rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
    np.testing.assert_allclose(rot[:, :, 1], np.broadcast_to([0, 1, 0], (64, 3)), atol=1e-6)
    yaw = np.arctan2(rot[:, 0, 2], rot[:, 0, 0])
    assert yaw.min() < -2.5 and yaw.max() > 2.5
    tilted = poses.random_orientations(np.random.default_rng(0), 64, max_tilt=0.3)
    tilt = np.arccos(np.clip(tilted[:, 1, 1], -1, 1))
    assert 0.05 < tilt.max() < 0.45


def test_subsample_keeps_a_maximal_set_of_far_apart_poses(sample):
    pool = sample.poses[:400]
    kept = poses.subsample_poses(pool, min_distance=0.08, seed=3)
    flat = pool - pool.mean(1, keepdims=True)

    def rms(a, b):  # (N, J, 3), (M, J, 3) -> (N, M)
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1).mean(-1))

    d = rms(flat[kept], flat[kept])
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 0.08
    removed = np.setdiff1d(np.arange(len(pool)), kept)
    assert len(removed) > 0 and (rms(flat[removed], flat[kept]).min(1) < 0.08).all()
    np.testing.assert_array_equal(kept, poses.subsample_poses(pool, min_distance=0.08, seed=3))


def test_subsample_removes_duplicates_and_poses_near_the_reference():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(5, 13, 3))
    copies = np.concatenate([base, base + 1e-4, base[:2] + [1.0, 2.0, 3.0]])  # translations too
    kept = poses.subsample_poses(copies, min_distance=0.01)
    assert len(kept) == 5 and len(np.unique(kept % 5)) == 5
    assert len(poses.subsample_poses(copies, min_distance=0.01, reference=base[:3])) == 2
    with pytest.raises(ValueError, match="NaN"):
        poses.subsample_poses(np.full((2, 13, 3), np.nan), min_distance=0.1)
    with pytest.raises(ValueError, match="reference"):
        poses.subsample_poses(base, min_distance=0.1, reference=base[:, :5])


def test_canonical_yaw_undoes_random_orientations(sample):
    turned = geometry.rotate(
        sample.poses[:50], poses.random_orientations(np.random.default_rng(2), 50)
    )
    back = poses.canonical_yaw(turned + [1.0, 0.5, 4.0])
    np.testing.assert_allclose(back, poses.canonical_yaw(sample.poses[:50]), atol=1e-5)
    hips = back[:, J["left_hip"]] - back[:, J["right_hip"]]
    assert (hips[:, 0] > 0).all() and np.abs(hips[:, 2]).max() < 1e-5
    with pytest.raises(ValueError, match="shape"):
        poses.canonical_yaw(np.zeros((2, 13, 3)))
