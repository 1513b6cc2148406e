"""Launcher errors: one line on stderr, a non-zero exit, nothing written (issue #18)."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = "experiments/configs/synthetic_tiny.py"


def _launch(script, *args):
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
    command = [sys.executable, str(ROOT / "experiments" / script), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)


def _error_line(run) -> str:
    """The one line on stderr of a launcher that failed with exit status 1."""
    assert run.returncode == 1, run.stderr
    (line,) = run.stderr.strip().splitlines()
    return line


def _one_line_error(run, expected):
    assert _error_line(run) == f"error: {expected}"


def test_a_config_key_typo_names_the_close_keys(tmp_path):
    workdir = tmp_path / "run"
    run = _launch(
        "train.py", f"--config={TINY}", "--config.train.num_stepz=3", f"--workdir={workdir}"
    )
    _one_line_error(
        run, f"unknown config key train.num_stepz in {TINY}; close keys: train.num_steps"
    )
    assert not workdir.exists()


def test_a_config_argument_is_refused_in_one_line(tmp_path):
    run = _launch("train.py", f"--config={TINY}:foo", f"--workdir={tmp_path / 'run'}")
    _one_line_error(run, f"the configs take no argument: --config={TINY}, not --config={TINY}:foo")
    assert not (tmp_path / "run").exists()


def test_a_config_key_given_twice_is_refused(tmp_path):
    # absl joined the two values of a tuple field: (32, 64, 16, 32) anchor sizes.
    sizes = "--config.model.rpn_anchor_sizes="
    workdir = tmp_path / "run"
    run = _launch("train.py", f"--config={TINY}", f"{sizes}(32,64)", f"{sizes}(16,32)",
                  f"--workdir={workdir}")  # fmt: skip
    _one_line_error(run, "--config.model.rpn_anchor_sizes is given more than once: give it once")
    assert not workdir.exists()


def test_a_failed_run_leaves_a_folder_of_other_files_as_it_was(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run = _launch("evaluate.py", f"--config={TINY}", f"--workdir={tmp_path}")
    _one_line_error(run, f"{tmp_path} holds no training run (no checkpoints/)")
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_an_unknown_config_file_lists_the_configs(tmp_path):
    run = _launch("train.py", "--config=experiments/configs/nope.py", f"--workdir={tmp_path}")
    line = _error_line(run)
    assert line.startswith("error: config file experiments/configs/nope.py not found; configs in ")
    assert "'synthetic_tiny'" in line


@pytest.mark.parametrize("script", ["predict.py", "evaluate.py", "train.py"])
def test_a_config_that_is_not_valid_python_ends_in_one_line(tmp_path, script):
    config = tmp_path / "bad.py"
    config.write_text("def get_config(:\n    pass\n")
    workdir = tmp_path / "run"
    args = [f"--workdir={workdir}"] if script != "predict.py" else []
    overrides = ["--config.train.num_steps=3"] if script == "train.py" else []  # either way
    run = _launch(script, f"--config={config}", *overrides, *args)
    _one_line_error(run, f"config {config}: invalid syntax (line 1)")
    assert not workdir.exists()


def test_a_config_importing_a_missing_module_ends_in_one_line(tmp_path):
    config = tmp_path / "missing.py"
    config.write_text("from experiments.configs import nope\n")
    run = _launch("train.py", f"--config={config}", f"--workdir={tmp_path / 'run'}")
    line = _error_line(run)
    assert line.startswith("error: cannot import name 'nope' from 'experiments.configs'")
    assert not (tmp_path / "run").exists()


def test_help_lists_the_config_keys():
    run = _launch("train.py", f"--config={TINY}", "--help")
    assert "  train.num_steps = " in run.stdout and "  ppi.iou_threshold = " in run.stdout


@pytest.mark.parametrize("launcher", ["predict.py", "export.py"])
def test_help_lists_the_flags_that_choose_the_model(launcher):
    """They live in experiments/model_flags.py: --help showed them under --helpfull only."""
    run = _launch(launcher, "--help")
    assert all(f"  --{name}:" in run.stdout for name in ("checkpoint", "config", "weights"))


def test_help_lists_no_config_keys_without_a_config():
    # build_dataset.py takes no --config: base.py's keys would be a lie there.
    run = _launch("build_dataset.py", "--help")
    assert "--manual_dir" in run.stdout
    assert "Config keys" not in run.stdout and "train.num_steps" not in run.stdout


@pytest.mark.parametrize("content", [b"not a pickle at all", b""])
def test_weights_that_are_not_a_pickle_end_in_one_line(tmp_path, content):
    weights = tmp_path / "model.pkl"
    weights.write_bytes(content)
    image = ROOT / "docs" / "images" / "demo_predictions.png"
    out = tmp_path / "out"
    run = _launch("predict.py", f"--weights={weights}", f"--input={image}", f"--output_dir={out}")
    line = _error_line(run)
    assert line.startswith("error: ") and str(weights) in line
    assert not out.exists()


def test_an_output_folder_that_cannot_be_written_ends_in_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    run = _launch("train.py", f"--config={TINY}", f"--workdir={blocker / 'run'}")
    line = _error_line(run)
    assert line.startswith("error: ") and "a_file" in line
    run = _launch("train.py", f"--config={TINY}", f"--workdir={blocker}")
    _one_line_error(run, f"{blocker} is a file, not a folder for the outputs")


def test_a_nan_min_score_ends_in_one_line(tmp_path):
    image = ROOT / "docs" / "images" / "demo_predictions.png"
    out = tmp_path / "out"
    run = _launch(
        "predict.py", "--weights=model.pkl", f"--input={image}", f"--output_dir={out}",
        "--min_score=nan",
    )  # fmt: skip
    _one_line_error(run, "--min_score must be a number, got nan")
    assert not out.exists()


def test_flag_errors_end_in_one_line(tmp_path):
    run = _launch("train.py", f"--config={TINY}")
    _one_line_error(run, "flag --workdir=None: Flag --workdir must have a value other than None.")
    run = _launch("predict.py", "--weights=m.pkl", "--inptu=a.jpg", f"--output_dir={tmp_path}")
    _one_line_error(run, "Unknown command line flag 'inptu'. Did you mean: input ?")
    run = _launch("evaluate.py", f"--config={TINY}", f"--exported={tmp_path / 'none'}")
    _one_line_error(run, f"{tmp_path / 'none'} holds no exported model (no metadata.json)")
    run = _launch("train.py", f"--config={TINY}", f"--workdir={tmp_path / 'run'}", "stray", "x")
    _one_line_error(run, "unexpected arguments: stray x")
    assert not (tmp_path / "run").exists()
    run = _launch("predict.py", "--input=a.jpg", f"--output_dir={tmp_path}")
    _one_line_error(run, "give exactly one of --weights, --checkpoint and --exported")
    run = _launch("build_dataset.py")
    assert run.stderr.startswith("error: --dataset is required; available: cmu_mocap, ")
    _one_line_error(run, run.stderr.strip()[len("error: ") :])


def _run_after_logging_setup(log_dir, *lines):
    """Runs Python `lines` after the launchers' logging set-up with `log_dir`."""
    script = "\n".join([
        "import errno, logging",
        "from absl import flags, logging as absl_logging",
        "from experiments import launch",
        "flags.FLAGS(['x'])",
        "absl_logging.use_absl_handler()  # as app.run does",
        f"launch._setup_logging({str(log_dir)!r})",
        *lines,
    ])  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run


def test_a_logged_traceback_stays_off_the_console_and_goes_to_the_log(tmp_path):
    run = _run_after_logging_setup(
        tmp_path,
        "try:",
        "    raise ValueError('No space left on device')",
        "except ValueError:",
        "    logging.getLogger('orbax').exception('background save failed')",
    )
    (line,) = run.stderr.strip().splitlines()
    assert line.endswith("background save failed")
    log = (tmp_path / "log.txt").read_text()
    assert "background save failed\nTraceback" in log and "ValueError: No space left" in log


def test_a_log_file_that_cannot_be_written_warns_once(tmp_path):
    run = _run_after_logging_setup(
        tmp_path,
        "handlers = logging.getLogger().handlers",
        "(log_file,) = [h for h in handlers if isinstance(h, launch._LogFile)]",
        "class Full:",
        "    def write(self, text):",
        "        raise OSError(errno.ENOSPC, 'No space left on device')",
        "    def flush(self):",
        "        pass",
        "log_file.stream = Full()",
        "for i in range(3):",
        "    logging.getLogger('orbax').info('step %d', i)",  # log.txt only
    )
    assert run.stderr.strip().splitlines() == [
        f"warning: cannot write {tmp_path / 'log.txt'}: [Errno 28] No space left on device"
    ]


def test_a_log_file_that_cannot_be_opened_warns_once_and_the_launcher_goes_on(tmp_path):
    # As in a read-only run folder evaluated with --eval_dir elsewhere.
    (tmp_path / "log.txt").mkdir()
    run = _run_after_logging_setup(
        tmp_path,
        "assert not any(isinstance(h, launch._LogFile) for h in logging.getLogger().handlers)",
        "logging.getLogger('orbax').warning('still on the console')",
    )
    warning, line = run.stderr.strip().splitlines()
    assert warning == (
        f"warning: library logs are not kept: [Errno 21] Is a directory: '{tmp_path / 'log.txt'}'"
    )
    assert line.endswith("still on the console")


def test_a_compilation_cache_that_cannot_be_written_is_one_warning(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cache = blocker / "cache"
    script = "\n".join([
        "import jax, jax.numpy as jnp",
        "from absl import flags",
        "from experiments import launch",
        f"flags.FLAGS(['x', '--compilation_cache_dir={cache}'])",
        "launch._setup_compilation_cache()",
        "for n in range(3):",
        "    jax.jit(lambda x: x + n)(jnp.ones(3)).block_until_ready()",
    ])  # fmt: skip
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert (
        run.stderr.strip()
        == f"warning: no compilation cache: [Errno 20] Not a directory: '{cache}'"
    )


_KILLED_WHILE_WRITING = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from experiments import launch
from lcrnet_jax.data import atomic

def main(argv):
    with atomic.atomic_path({out!r}) as tmp:
        tmp.write_text("half")
        os.kill(os.getpid(), {signal})
        time.sleep(30)  # the signal's handler raises before this ends

launch.run(main, on_interrupt={hint!r})
"""


@pytest.mark.parametrize("signal_name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_kill_is_cleaned_up_as_ctrl_c(tmp_path, signal_name, status):
    """SIGTERM (`kill`, `timeout`, a scheduler) ended a prediction at once: the hidden
    temporary files it was writing stayed in the output folder."""
    script = tmp_path / "launcher.py"
    out = tmp_path / "out" / "result.json"
    out.parent.mkdir()
    script.write_text(_KILLED_WHILE_WRITING.format(
        root=str(ROOT), out=str(out), signal=f"signal.{signal_name}", hint="rerun it"
    ))  # fmt: skip
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == status, run.stderr
    assert run.stderr.strip().splitlines() == ["error: interrupted; rerun it"]
    assert os.listdir(out.parent) == []


_KILLED_IN_A_GC_CALLBACK = """
import gc, os, signal, sys, time
sys.path.insert(0, {root!r})
from experiments import launch

def main(argv):
    sent = []

    def callback(phase, info):  # as jax's, which runs at every collection
        if not sent:
            sent.append(phase)
            os.kill(os.getpid(), {signal})
            sum(range(100000))  # the signal's handler runs here, inside the callback

    gc.callbacks.append(callback)
    gc.collect()
    time.sleep(10)
    print("ran to its end")

launch.run(main)
"""


@pytest.mark.parametrize("signal_name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_landing_in_a_garbage_collector_callback_still_stops(
    tmp_path, signal_name, status
):
    """Python prints and drops an exception raised in a gc callback: a SIGTERM landing
    in jax's let predict.py run to its end (1 in 7 in an audit)."""
    script = tmp_path / "launcher.py"
    script.write_text(
        _KILLED_IN_A_GC_CALLBACK.format(root=str(ROOT), signal=f"signal.{signal_name}")
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stdout) == (status, ""), run.stderr
    assert run.stderr.strip().splitlines() == ["error: interrupted"]


def test_a_tilde_in_a_path_flag_is_the_home_folder(tmp_path):
    """The shell leaves `--workdir=~/run` as it is: a folder named "~" appeared in the
    working folder (`--data_dir` and the cache folder were expanded, these were not)."""
    home = tmp_path / "home"
    home.mkdir()
    command = [
        sys.executable, str(ROOT / "experiments" / "train.py"), f"--config={ROOT / TINY}",
        "--workdir=~/run", "--config.train.num_steps=-1",
    ]  # fmt: skip
    env = dict(os.environ, HOME=str(home), JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
    run = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert _error_line(run) == "error: train.num_steps must be >= 0, got -1"
    assert sorted(os.listdir(tmp_path)) == ["home"]  # and the failed run left nothing there


def test_a_python_warning_is_one_console_line(tmp_path):
    """Pillow's DecompressionBombWarning on a 108-megapixel photo printed the warning's
    file, line and source line over the progress bar."""
    script = tmp_path / "launcher.py"
    script.write_text(
        f"import sys, warnings\nsys.path.insert(0, {str(ROOT)!r})\n"
        "from experiments import launch\n"
        "launch.run(lambda argv: warnings.warn('big image\\nsecond line', UserWarning))\n"
    )
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr == "warning: UserWarning: big image\n"


def test_evaluate_refuses_flags_that_do_not_go_together(tmp_path):
    """Both --workdir and --exported (one would be ignored), --step with an exported
    model, and --eval_dir with --diagnose (which writes nothing) end in one line."""
    run = _launch("evaluate.py", f"--config={TINY}", f"--workdir={tmp_path / 'run'}",
                  f"--exported={tmp_path / 'exported'}")  # fmt: skip
    _one_line_error(run, "give exactly one of --workdir and --exported")
    run = _launch("evaluate.py", f"--config={TINY}", f"--exported={tmp_path}", "--step=3")
    _one_line_error(run, "--step and --diagnose need a checkpoint (--workdir)")
    run = _launch("evaluate.py", f"--config={TINY}", f"--workdir={tmp_path}", "--diagnose",
                  f"--eval_dir={tmp_path / 'eval'}")  # fmt: skip
    _one_line_error(run, "--diagnose writes no file: --eval_dir is not for it")
    assert os.listdir(tmp_path) == []


def run_stubbed(script, stub, *args):
    """Runs experiments/`script` as its command line does, with `args`, after the Python
    lines `stub` (which replace the library function it calls)."""
    code = "\n".join([
        "import runpy, sys",
        *stub,
        f"sys.argv = {[script, *args]!r}",
        f"runpy.run_path({str(ROOT / 'experiments' / script)!r}, run_name='__main__')",
    ])  # fmt: skip
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT
    )


def test_a_training_stopped_by_a_signal_exits_with_it(tmp_path):
    """A run that a SIGTERM stopped (checkpoint saved) says how to resume and exits 143,
    not 0 with a table, so that a scheduler sees it did not finish."""
    stub = [
        "from lcrnet_jax.train import loop",
        "loop.train_and_evaluate = lambda config, workdir: "
        "{'stopped': True, 'step': 7, 'signal': 15}",
    ]
    run = run_stubbed("train.py", stub, f"--config={TINY}", f"--workdir={tmp_path}")
    assert run.returncode == 143, run.stderr
    assert run.stdout.startswith("stopped at step 7; checkpoint saved, rerun the same command")


def flag_defaults(script: str, names) -> dict:
    """The defaults of the flags `names` of experiments/`script` (.py), read in a process of
    its own (launchers define flags of the same names)."""
    code = "\n".join([
        "import importlib, json",
        "from absl import flags",
        f"importlib.import_module('experiments.{script}')",
        f"print(json.dumps({{n: flags.FLAGS[n].default for n in {sorted(names)!r}}}))",
    ])  # fmt: skip
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


_PREDICT_STUB = [
    "import json",
    "import numpy as np",
    "from lcrnet_jax.predict import canvas, outputs",
    "def predict_files(inputs, output_dir, **options):",
    "    people = np.zeros((2, 13, 2), np.float32) + [[[15.0, 20.0]], [[100.0, 20.0]]]",
    "    people[:, :, 1] += np.arange(13) - 6.0  # two upright lines of joints",
    "    result = canvas.PoseResult(joint_set='lcr13', poses2d=people,",
    "        poses3d=np.zeros((2, 13, 3), np.float32), scores=np.float32([0.1, 0.05]),",
    "        image_size=(40, 120))",
    "    drawn = options['draw_frame'](np.zeros((40, 120, 3), np.uint8), result, ids=[5, 6])",
    "    tracking = options['tracking']",
    "    print(json.dumps(dict(",
    "        drawn=[bool(drawn[:, :60].any()), bool(drawn[:, 85:].any())],  # A, B",
    "        tracking={k: getattr(tracking, k)",
    "                  for k in ('max_age', 'smooth', 'min_cutoff', 'beta')},",
    "        **{k: options.get(k) for k in ('ppi_overrides', 'batch_size', 'fov_degrees',",
    "           'skip_existing', 'weights', 'method', 'ppi', 'short_side', 'max_long_side')})))",
    "    return outputs.Summary(**json.loads(SUMMARY))",
    "outputs.predict_files = predict_files",
]


def _predict_stubbed(tmp_path, summary, *args):
    stub = [f"SUMMARY = {summary!r}", *_PREDICT_STUB]
    return run_stubbed(
        "predict.py", stub, "--weights=m.pkl", "--input=a.jpg",
        f"--output_dir={tmp_path / 'out'}", *args,
    )  # fmt: skip


def test_predict_passes_each_flag_to_its_setting(tmp_path):
    """Every PPI, scale, camera and tracking flag of predict.py reaches its own setting;
    videos draw the people scoring at least 0.1 by default (the flag's help)."""
    run = _predict_stubbed(
        tmp_path, '{"images": 1, "inputs_done": 1}', "--iou_threshold=0.11", "--t3d=0.22",
        "--box_joints=torso_head", "--min_mode_score=0.33", "--person_threshold=0.44",
        "--max_people=5", "--group_by=roi", "--rescore_sigma=7", "--short_side=320",
        "--max_long_side=480", "--batch_size=3", "--fov=60", "--track_max_age=9",
        "--nosmooth", "--smooth_min_cutoff=0.7", "--smooth_beta=0.8", "--skip_existing",
        "--method=nms", "--ppi=demo",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0]) == {
        "drawn": [True, False],  # scores 0.1 and 0.05
        "tracking": {"max_age": 9, "smooth": False, "min_cutoff": 0.7, "beta": 0.8},
        "ppi_overrides": {
            "iou_threshold": 0.11, "t3d": 0.22, "box_joints": "torso_head",
            "min_mode_score": 0.33, "person_threshold": 0.44, "max_people": 5,
            "group_by": "roi", "rescore_sigma": 7.0,
        },
        "batch_size": 3, "fov_degrees": 60.0, "skip_existing": True, "weights": "m.pkl",
        "method": "nms", "ppi": "demo", "short_side": 320, "max_long_side": 480,
    }  # fmt: skip


def test_predict_fails_only_when_no_input_was_processed_or_kept(tmp_path):
    """Every input failed: exit status 1 after the summary line; a rerun that kept every
    input from an earlier run (--skip_existing) succeeds."""
    run = _predict_stubbed(tmp_path, '{"failed": 2}')
    assert _error_line(run) == "error: no input could be processed"
    assert "predict: 0 images from 0 of 2 inputs" in run.stdout
    run = _predict_stubbed(tmp_path, '{"kept": 2}', "--skip_existing")
    assert run.returncode == 0, run.stderr


def test_export_passes_each_flag_to_its_argument(tmp_path):
    """export.py's buckets, platforms and model flags reach `export.export_model`."""
    stub = [
        "import json, pathlib",
        "from lcrnet_jax.predict import export",
        "def export_model(output_dir, **options):",
        "    print(json.dumps(dict(options, output_dir=output_dir)))",
        "    return pathlib.Path(output_dir) / 'metadata.json'",
        "export.export_model = export_model",
    ]
    out = str(tmp_path / "exported")
    run = run_stubbed(
        "export.py", stub, "--weights=m.pkl", "--bucket=800x800", "--bucket=800x1088",
        "--platforms=cpu,cuda", f"--output_dir={out}", "--ppi=demo", "--method=nms",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[0]) == {
        "output_dir": out, "buckets": ["800x800", "800x1088"], "platforms": ["cpu", "cuda"],
        "weights": "m.pkl", "checkpoint": None, "config": None, "step": None, "ppi": "demo",
        "method": "nms",
    }  # fmt: skip
    assert run.stdout.splitlines()[1] == f"export: {out}"
