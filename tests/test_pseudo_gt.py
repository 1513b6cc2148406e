import jax
import numpy as np
import pytest

from lcrnet_jax import geometry
from lcrnet_jax import pseudo_gt as pg

# One corpus shape and one chunk size for every search, so that few shapes compile.
NUM_POSES, NUM_VIEWS, CHUNK = 60, 8, 128  # 4 search steps, the last one padded


def _random_poses(num, joints=13, seed=0):
    """Random LCR poses: a standing skeleton plus large random joint offsets (metres)."""
    rng = np.random.default_rng(seed)
    height = np.linspace(0.9, -0.7, joints)[None, :, None] * np.array([0.0, 1.0, 0.0])
    return (height + rng.normal(scale=0.25, size=(num, joints, 3))).astype(np.float32)


@pytest.fixture(scope="module")
def corpus():
    return pg.project_corpus(_random_poses(NUM_POSES), jax.random.key(1), num_views=NUM_VIEWS)


@pytest.fixture(scope="module")
def all_views(corpus):
    p3, p2 = corpus.views(np.arange(corpus.size))
    return np.asarray(p3, np.float64), np.asarray(p2, np.float64)


def _masks(num, joints=13, seed=0, min_visible=3):
    rng = np.random.default_rng(seed)
    masks = rng.random((num, joints)) > rng.uniform(0.0, 0.6, size=(num, 1))
    masks[:, :min_visible] = True
    return rng.permuted(masks, axis=1)


def _brute_force(query2d, visible, views2d):
    """D2D to every corpus entry in float64, straight from the definition."""

    def normalize(p, m):
        m = m[..., None]
        centre = (p * m).sum(-2, keepdims=True) / m.sum(-2, keepdims=True)
        c = (p - centre) * m
        return c / np.sqrt((c**2).sum((-2, -1), keepdims=True))

    q = normalize(query2d.astype(np.float64), visible)  # (Q, J, 2)
    c = normalize(views2d[None], visible[:, None])  # (Q, M, J, 2)
    return np.sqrt(((q[:, None] - c) ** 2).sum((-2, -1)))  # (Q, M)


def test_normalize_pose_hand_case():
    pose = np.array([[[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]]])
    mask = np.array([[True, True, False]])
    center, scale = pg.pose_normalization(pose, mask)
    np.testing.assert_allclose(center, [[1.0, 0.0]])
    np.testing.assert_allclose(scale, [np.sqrt(2.0)], rtol=1e-6)
    r = 1 / np.sqrt(2.0)
    np.testing.assert_allclose(
        pg.normalize_pose(pose, mask), [[[-r, 0.0], [r, 0.0], [0.0, 0.0]]], rtol=1e-6
    )
    np.testing.assert_array_equal(pg.normalize_pose(pose[:, [0, 0, 2]], mask), 0.0)


def test_corpus_views_are_rotated_torso_centred_poses(corpus):
    p3, p2 = corpus.views(np.array([0, 9, corpus.size - 1]))
    np.testing.assert_allclose(geometry.torso_center(p3), 0.0, atol=1e-6)
    np.testing.assert_allclose(p2, p3[..., :2])
    base = np.asarray(corpus.poses3d)[[0, 1, NUM_POSES - 1]]
    dist = lambda x: np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(dist(np.asarray(p3)), dist(base), atol=1e-5)
    # Entry m is view m % V of pose m // V, and the corpus is a function of its key.
    by_pose, _ = corpus.pose_views(np.array([0, 1, NUM_POSES - 1]))  # (3, V, J, 3)
    np.testing.assert_allclose(by_pose[[0, 1, 2], [0, 1, NUM_VIEWS - 1]], p3, atol=1e-6)
    again = pg.project_corpus(_random_poses(NUM_POSES), jax.random.key(1), num_views=NUM_VIEWS)
    np.testing.assert_allclose(again.views(np.array([0, 9, corpus.size - 1]))[0], p3, atol=1e-6)


def test_project_corpus_rejects_bad_input():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="LCR-13 or LCR-17"):
        pg.project_corpus(np.zeros((4, 14, 3)), key, num_views=2)
    with pytest.raises(ValueError, match="LCR-13 or LCR-17"):
        pg.project_corpus(np.zeros((4, 13, 3)), key, num_views=2, joint_set="lcr17")
    with pytest.raises(ValueError, match="NaN"):
        pg.project_corpus(np.full((4, 13, 3), np.nan), key, num_views=2)
    with pytest.raises(ValueError, match="num_views"):
        pg.project_corpus(np.zeros((4, 13, 3)), key, num_views=0)
    with pytest.raises(ValueError, match=r"max_elevation must be in \[0, pi/2\]"):
        pg.project_corpus(np.zeros((4, 13, 3)), key, num_views=2, max_elevation=-1.0)
    with pytest.raises(ValueError, match=r"max_roll must be in \[0, pi\]"):
        pg.project_corpus(np.zeros((4, 13, 3)), key, num_views=2, max_roll=float("nan"))


@pytest.fixture(scope="module")
def exact_case(corpus, all_views):
    """Corpus views in pixels (scaled, translated) with hidden joints, and the result."""
    rng = np.random.default_rng(3)
    index = rng.choice(corpus.size, 40, replace=False)
    visible = _masks(40, seed=4)
    visible[:5] = True
    truth2d = all_views[1][index] * 250.0 + np.array([320.0, 240.0])
    query = np.where(visible[..., None], truth2d, np.nan)  # hidden joints are NaN
    result = pg.pseudo_ground_truth(query, visible, corpus, chunk_size=CHUNK)
    return index, visible, truth2d, result


def test_pseudo_gt_recovers_corpus_pose_and_hidden_joints(exact_case, all_views):
    index, visible, truth2d, result = exact_case
    assert result.valid.all()
    np.testing.assert_array_equal(result.index, index)
    np.testing.assert_allclose(result.poses3d, all_views[0][index], atol=1e-5)
    np.testing.assert_allclose(result.poses2d, truth2d, atol=5e-3)  # pixels
    np.testing.assert_array_equal(result.poses2d[visible], truth2d[visible].astype(np.float32))
    assert result.distance.max() < 2e-3


def test_match_is_invariant_to_scale_and_translation(exact_case, corpus):
    index, visible, truth2d, result = exact_case
    moved = truth2d * 0.1 + np.array([-40.0, 7.0])
    again = pg.nearest_poses(moved, visible, corpus, chunk_size=CHUNK)
    np.testing.assert_array_equal(again.index, result.index)
    np.testing.assert_allclose(again.distance, result.distance, atol=1e-3)


@pytest.fixture(scope="module")
def random_case(corpus, all_views):
    rng = np.random.default_rng(5)
    query = _random_poses(48, seed=6)[..., :2] * 90.0 + rng.uniform(0, 500, size=(48, 1, 2))
    visible = _masks(48, seed=7, min_visible=2)
    brute = _brute_force(query, visible, all_views[1])  # (Q, M)
    return query, visible, brute


def _check_against(result, brute):
    order = np.sort(brute, axis=1)
    assert result.valid.all()
    np.testing.assert_allclose(result.distance, order[:, 0], atol=1e-4)
    clear = order[:, 1] - order[:, 0] > 1e-4  # no near tie: the index is determined
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(result.index[clear], np.argmin(brute, axis=1)[clear])


def test_chunked_jnp_search_equals_brute_force(corpus, random_case):
    query, visible, brute = random_case
    _check_against(pg.nearest_poses(query, visible, corpus, chunk_size=CHUNK), brute)


def test_sklearn_search_agrees_with_jnp_and_brute_force(corpus, random_case):
    query, visible, brute = random_case
    sk = pg.nearest_poses(query[:6], visible[:6], corpus, method="sklearn", chunk_size=CHUNK)
    _check_against(sk, brute[:6])
    ours = pg.nearest_poses(query[:6], visible[:6], corpus, chunk_size=CHUNK)
    np.testing.assert_allclose(sk.distance, ours.distance, atol=1e-5)


def test_queries_with_too_few_joints_are_flagged(corpus, exact_case):
    _, visible, truth2d, _ = exact_case
    visible = visible[:5].copy()
    query = truth2d[:5].copy()
    visible[0] = False  # no joint
    visible[1, 1:] = False  # one joint
    visible[2, 2:] = False
    query[2, 1] = query[2, 0]  # two joints at one point
    visible[3, 2:] = False
    query[3, 1, 1] = query[3, 0, 1]  # two joints on one row: apart in x only, usable
    result = pg.pseudo_ground_truth(query, visible, corpus, chunk_size=CHUNK)
    np.testing.assert_array_equal(result.valid, [False, False, False, True, True])
    np.testing.assert_array_equal(result.index[:3], -1)
    assert np.isnan(result.distance[:3]).all() and not np.isnan(result.distance[3:]).any()
    np.testing.assert_array_equal(result.poses3d[:3], 0.0)


def test_bad_queries_raise(corpus):
    good = np.zeros((2, 13, 2))
    visible = np.ones((2, 13), bool)
    with pytest.raises(ValueError, match=r"\(Q, 13, 2\)"):
        pg.nearest_poses(np.zeros((2, 17, 2)), np.ones((2, 17), bool), corpus)
    with pytest.raises(ValueError, match="query_visible"):
        pg.nearest_poses(good, visible[:1], corpus)
    bad = good.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"query2d\[1\] has NaN"):
        pg.nearest_poses(bad, visible, corpus)
    with pytest.raises(ValueError, match="method"):
        pg.nearest_poses(good, visible, corpus, method="faiss")
    with pytest.raises(ValueError, match="min_joints"):
        pg.nearest_poses(good, visible, corpus, min_joints=1)
