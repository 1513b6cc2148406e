r"""Settings shared by every experiment; each config in this folder overrides some.

python experiments/train.py --config=experiments/configs/<name>.py --workdir=runs/<name>
"""

import ml_collections
from ml_collections.config_dict import placeholder


def source(
    name: str, split: str = "train", weight: float = 1.0, pseudo_gt: bool = False
) -> ml_collections.ConfigDict:
    """One entry of `config.data.sources` (see `lcrnet_jax.data.pipeline.Source`)."""
    return ml_collections.ConfigDict(
        {"name": name, "split": split, "weight": float(weight), "pseudo_gt": pseudo_gt}
    )


def get_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.distributed = False  # jax.distributed.initialize() (multi-host TPU/GPU)

    config.data = ml_collections.ConfigDict()
    # Training sources, mixed by weight (Sec. 4.2-4.3): label -> source(name, split, weight,
    # pseudo_gt). pseudo_gt=True reads the sidecar of experiments/add_pseudo_gt.py (needed
    # by 2D-only sources). One dataset is a one-entry mixture.
    config.data.sources = ml_collections.ConfigDict(
        {"synthetic": source("synthetic_people/default")}
    )
    config.data.eval_name = "synthetic_people/default"  # TFDS name[/config] evaluated
    config.data.eval_split = "test"
    config.data.data_dir = ""  # "" = TFDS default (~/tensorflow_datasets)
    # The MoCap pose corpus of the anchor poses and the pseudo ground truth (named in the
    # commands that error messages print; see experiments/fit_anchors.py).
    config.data.corpus = "cmu_mocap"
    # Input scale (Sec. 4.2, `lcrnet_jax.data.resize`), the same in training, evaluation
    # and prediction: short side to short_side, long side at most max_long_side, times
    # the scale_range jitter in training. The canvas is image_size (height, width), or
    # () for size buckets (training: one image per host a step, as the paper's R50;
    # evaluation: eval.batch_size images of one bucket a call).
    config.data.short_side = 512
    config.data.max_long_side = 512
    config.data.image_size = (512, 512)
    config.data.joint_set = "lcr13"
    config.data.max_people = 16
    config.data.batch_size = 8  # global, over all devices and hosts
    config.data.num_workers = 2
    config.data.scale_range = (0.75, 1.25)
    config.data.flip_probability = 0.5

    config.anchor_poses = ml_collections.ConfigDict()
    config.anchor_poses.num = 10  # K full-body anchor poses
    config.anchor_poses.upper_body = True  # also K upper-body twins (Sec. 4.2)
    config.anchor_poses.normalize = True  # divide regression targets by their std
    # An anchors .npz of experiments/fit_anchors.py (e.g. on cmu_mocap); "" = K-means on
    # the 3D people of the training sources.
    config.anchor_poses.path = ""
    config.anchor_poses.max_records = 20_000

    # The network: a preset of lcrnet_jax.model.lcrnet (small, resnet50_c4, vgg16,
    # released) and overrides of its LCRNetConfig fields (unset keeps the preset's).
    config.model = ml_collections.ConfigDict()
    config.model.preset = "resnet50_c4"
    config.model.iterative = False
    config.model.joint_refinement = placeholder(int)
    config.model.joint_grid = placeholder(int)
    config.model.joint_heatmap = placeholder(bool)
    config.model.joint_classes = placeholder(int)
    config.model.joint_repeats = placeholder(int)  # inference runs of each stage
    config.model.joint_polish = placeholder(int)  # passes on PPI's people (LCRNetConfig)
    config.model.flip_test = False  # inference on the mirrored images too (LCRNetConfig)
    config.model.test_scales = placeholder(tuple)  # and on resized images (LCRNetConfig)
    config.model.dtype = "float32"
    config.model.roi_pooling = placeholder(str)
    config.model.roi_method = placeholder(str)  # "gather" or "einsum" (ops.roi_align)
    config.model.width = placeholder(int)
    config.model.stage_sizes = placeholder(tuple)
    config.model.rpn_anchor_sizes = placeholder(tuple)
    config.model.roi_size = placeholder(int)
    config.model.fc_dim = placeholder(int)
    config.model.refine_dim = placeholder(int)
    config.model.rpn_pre_nms_train = placeholder(int)
    config.model.rpn_post_nms_train = placeholder(int)
    config.model.rpn_pre_nms_test = placeholder(int)
    config.model.rpn_post_nms_test = placeholder(int)
    config.model.norm = placeholder(str)  # "frozen" (the presets'), "batch" or "group"
    config.model.freeze_at = placeholder(int)
    config.model.feature_stride = placeholder(int)
    config.model.proposal_border = placeholder(float)  # proposals beyond the image
    config.model.roi_chunk = placeholder(int)  # RoIs of an image read at once at inference

    config.model_init = ml_collections.ConfigDict()
    config.model_init.imagenet = ""  # torchvision ImageNet weights (.pth or .npz)
    config.model_init.workdir = ""  # start from another run's latest weights (fine-tuning)

    config.targets = ml_collections.ConfigDict()
    config.targets.rpn_samples = 256
    config.targets.rpn_positive_fraction = 0.5
    config.targets.roi_samples = 512
    config.targets.roi_foreground_fraction = 0.25
    config.targets.box_extent = "visible"  # or "known": boxes of whole people, beyond the image
    config.targets.anchor_border = 0.0
    config.targets.hidden_2d_weight = 1.0  # 2D targets of occluded or out-of-image joints
    config.targets.ignore_iof = 0.7  # background in crowds, unannotated or unboxed people: ignored

    config.loss = ml_collections.ConfigDict()  # losses.LossConfig: weights and smooth-L1 betas
    config.loss.rpn_cls_weight = 1.0
    config.loss.rpn_box_weight = 1.0
    config.loss.rpn_box_beta = 1.0 / 9  # Detectron
    config.loss.cls_weight = 1.0
    config.loss.regression_weight = 1.0
    config.loss.regression_beta = 1.0  # Eq. 5

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.kind = "sgd"  # the paper; "adamw" for training from scratch
    config.optimizer.learning_rate = 1e-3
    config.optimizer.warmup_steps = 1000
    config.optimizer.decay_steps = (1_800_000, 2_400_000)  # 1e-3 -> 1e-4 -> 1e-5
    config.optimizer.decay_factor = 0.1
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 1e-4
    config.optimizer.clip_norm = 10.0
    # Detectron's, the authors' base: biases at twice the rate, without weight decay.
    config.optimizer.bias_lr_factor = 2.0
    config.optimizer.bias_weight_decay = False

    config.train = ml_collections.ConfigDict()
    config.train.num_steps = 2_700_000
    config.train.log_every = 100
    config.train.checkpoint_every = 5000
    config.train.keep_checkpoints = 3
    config.train.eval_every = 50_000  # 0 = only at the end
    config.train.eval_images = 200  # images of the periodic evaluations
    # A step whose loss or update is non-finite, or whose update (the parameter change)
    # has a global norm above this, is skipped; AdamW at 1e-3 moves ~1e-3 * sqrt(#params).
    config.train.max_update_norm = 100.0
    config.train.max_consecutive_skipped = 20  # stop (exit 1) after so many skipped steps

    config.eval = ml_collections.ConfigDict()
    config.eval.batch_size = 8  # per host: each evaluates its share of the images
    config.eval.max_images = 0  # 0 = the whole split
    # People slots of evaluation batches (training's: data.max_people): the generic
    # metrics count the people of an image up to this many.
    config.eval.max_people = 64
    # "auto" = generic + the dataset's protocol, or names, e.g. "generic,mpii" or
    # "human36m/p3" (`lcrnet_jax.evaluation.benchmarks`)
    config.eval.evaluators = "auto"

    # Every PPI / NMS / candidate setting (postprocess.ppi.PPIConfig, field by field);
    # defaults are the authors' code's, plus the paper's Eq. 6 rescoring.
    config.ppi = ml_collections.ConfigDict()
    config.ppi.iou_threshold = 0.2  # group: pose-box IoU > this
    config.ppi.t3d = 0.3  # mode: D3D < this (metres)
    config.ppi.box_joints = "all"  # all, torso_head, shoulder_head
    config.ppi.min_mode_score = 0.05
    config.ppi.person_threshold = 0.002  # a person's mode score > this
    config.ppi.max_people = 32
    config.ppi.group_by = "pose"  # pose (paper), roi (improved-PPI release)
    config.ppi.lower_limb_weight = 0.1  # upper-body candidates' weight on the legs
    config.ppi.min_buffer = 128  # speed only
    config.ppi.candidate_threshold = 0.1  # candidates: score >= this / (C - 1)
    config.ppi.min_candidates = 500  # ... lowered to keep at least so many
    config.ppi.rescore_sigma = 25.0  # Eq. 6 (network pixels, the paper's at 800); 0 = off

    # experiments/predict.py with this run's checkpoint: pictures, videos and pages draw
    # the people scoring at least this, whom the tracker also lets start tracks. A PPI
    # score sums its mode's candidate probabilities, so each model has its own scale.
    config.predict = ml_collections.ConfigDict()
    config.predict.min_score = 0.1

    config.mesh = ml_collections.ConfigDict()
    config.mesh.model_parallel = 1  # devices of the "model" mesh axis
    return config
