"""Training machinery on tiny images and a tiny model: it learns, saves, resumes, and runs under torchrun."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from panet_cli.errors import PanetError
from panet_cli.loading.checkpoint import read_safetensors
from panet_cli.loading.architectures import build_network
from panet_cli.training import loop
from panet_cli.training.data import CropSampler
from panet_cli.training.hard_crops import HardCropReplay
from panet_cli.training.loop import TrainConfig, cosine_lr, train
from panet_cli.training.tasks import DegradationRecipe, sample_qualities

TINY = {"n_resblocks": 2, "n_feats": 8, "n_colors": 3, "reduction": 2, "input_skip": True, "window": 16,
        "window_overlap": 4}


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Smooth synthetic images (gradients and blobs): denoising them is learnable in a few steps."""
    folder = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:48] / 40.0
    for i in range(6):
        phase = rng.uniform(0, 6, size=3)
        img = np.stack([0.5 + 0.4 * np.sin(3 * xx + 2 * yy + p) for p in phase], axis=-1)
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def _config(folder: Path, out: Path, steps: int, **kw) -> TrainConfig:
    recipe = DegradationRecipe("denoise", sigma_min=25, sigma_max=25)
    defaults = dict(data=folder, out=out, network=dict(TINY), recipe=recipe, attention=True, patch=16, batch=4,
                    steps=steps, lr=3e-3, val_every=10, val_holdout=2, val_crop=32, precision="fp32", threads=1)
    defaults.update(kw)
    return TrainConfig(**defaults)


def test_cosine_schedule_decays_to_minimum():
    assert cosine_lr(0, 0, 100, 1e-3, 1e-6) == pytest.approx(1e-3)
    assert cosine_lr(100, 0, 100, 1e-3, 1e-6) == pytest.approx(1e-6)
    assert cosine_lr(50, 0, 100, 1e-3, 1e-6) < 1e-3


def test_warmup_ramps_linearly_then_follows_the_cosine():
    """A resumed stage starts from a small step size, not at full ``lr`` with a fresh Adam."""
    assert cosine_lr(100, 100, 200, 1e-3, 1e-6, warmup=10) == 0.0
    assert cosine_lr(105, 100, 200, 1e-3, 1e-6, warmup=10) == pytest.approx(0.5 * cosine_lr(105, 100, 200, 1e-3, 1e-6))
    assert cosine_lr(110, 100, 200, 1e-3, 1e-6, warmup=10) == pytest.approx(cosine_lr(110, 100, 200, 1e-3, 1e-6))
    assert cosine_lr(150, 100, 200, 1e-3, 1e-6, warmup=10) == cosine_lr(150, 100, 200, 1e-3, 1e-6)


def test_log_quality_sampling_gives_low_qualities_more_weight():
    g = torch.Generator().manual_seed(0)
    uniform = sample_qualities(DegradationRecipe("car", quality_min=10, quality_max=60), 20000, g)
    log = sample_qualities(DegradationRecipe("car", quality_min=10, quality_max=60, quality_sampling="log"), 20000, g)
    for q in (uniform, log):
        assert q.dtype == torch.int64 and q.min() == 10 and q.max() == 60
    # log-uniform: P(q <= 20) = ln(21/10) / ln(61/10), about 0.41, against 11/51 for uniform
    assert (uniform <= 20).float().mean() == pytest.approx(11 / 51, abs=0.02)
    assert (log <= 20).float().mean() == pytest.approx(np.log(2.1) / np.log(6.1), abs=0.02)
    with pytest.raises(ValueError, match="quality sampling"):
        sample_qualities(DegradationRecipe("car", quality_sampling="high"), 4, g)


def test_compiled_training_writes_weights_an_uncompiled_network_loads(image_folder, tmp_path):
    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=4, val_every=2, compile=True, attention=False), log=lambda m: None)
    tensors, meta = read_safetensors(out)
    build_network(meta["arch"], meta["config"]).load_state_dict(tensors, strict=True)


def test_training_lowers_the_loss_and_writes_a_loadable_model(image_folder, tmp_path):
    out = tmp_path / "m.safetensors"
    record = train(_config(image_folder, out, steps=40), log=lambda m: None)
    first, last = record["curve"][0][2], max(point[2] for point in record["curve"][1:])
    assert last > first + 1.0, record["curve"]
    tensors, meta = read_safetensors(out)
    assert meta["arch"] == "PANet" and meta["task"] == "denoise" and meta["step"] > 0
    assert meta["val_psnr"] == pytest.approx(record["best_val_psnr"])
    model = build_network(meta["arch"], meta["config"])
    model.load_state_dict(tensors, strict=True)
    assert model(torch.rand(1, 3, 20, 20)).shape == (1, 3, 20, 20)


def test_resume_continues_the_step_count(image_folder, tmp_path):
    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=10), log=lambda m: None)
    state = Path(str(out) + ".state.pt")
    record = train(_config(image_folder, out, steps=20, resume=state), log=lambda m: None)
    assert [p[0] for p in record["curve"]] == [0, 10, 20]
    # resuming from the model-only weights (what ships) keeps the count too
    _, meta = read_safetensors(out)
    record = train(_config(image_folder, tmp_path / "m2.safetensors", steps=meta["step"] + 10, resume=out),
                   log=lambda m: None)
    assert record["curve"][-1][0] == meta["step"] + 10


def test_attention_stage_starts_from_the_backbone_unchanged(image_folder, tmp_path):
    """Enabling the attention zero-initialises its assembly conv, so the network's output is unchanged."""
    out = tmp_path / "backbone.safetensors"
    train(_config(image_folder, out, steps=10, attention=False), log=lambda m: None)
    tensors, meta = read_safetensors(out)
    assert meta["attention_enabled"] is False
    record = train(_config(image_folder, tmp_path / "full.safetensors", steps=10, resume=out), log=lambda m: None)
    assert record["curve"][-1][0] == 10  # nothing to do: already at step 10
    record = train(_config(image_folder, tmp_path / "full.safetensors", steps=20, resume=out, lr=1e-9),
                   log=lambda m: None)
    # with a negligible learning rate the first validation after enabling equals the backbone's
    assert record["curve"][-1][2] == pytest.approx(meta["val_psnr"], abs=0.05)


def test_a_new_stage_writes_its_weights_even_below_the_previous_best(image_folder, tmp_path):
    """The attention stage must produce a file (with the attention on) even if it never beats the backbone."""
    backbone = tmp_path / "backbone.safetensors"
    train(_config(image_folder, backbone, steps=10, attention=False), log=lambda m: None)
    _, meta = read_safetensors(backbone)
    out = tmp_path / "attention.safetensors"
    # a learning rate this large wrecks the network: validation falls below the backbone's best
    record = train(_config(image_folder, out, steps=20, resume=backbone, lr=5.0), log=lambda m: None)
    assert record["curve"][-1][2] < meta["val_psnr"]
    tensors, stage2 = read_safetensors(out)
    assert stage2["step"] > 10 and stage2["attention_enabled"] is True


def test_a_cycle_resumed_from_model_weights_writes_its_output_even_below_their_best(image_folder, tmp_path):
    """Resuming from a .safetensors starts a new cycle (Adam resets) into a new file: it must appear.

    Before, the file's best validation PSNR carried over, so a cycle that never beat it (its first
    steps at a fresh, higher rate usually do not) wrote no weights at all, only its .state.pt.
    """
    first = tmp_path / "first.safetensors"
    train(_config(image_folder, first, steps=10), log=lambda m: None)
    _, meta = read_safetensors(first)
    out = tmp_path / "second.safetensors"
    record = train(_config(image_folder, out, steps=20, resume=first, lr=5.0), log=lambda m: None)
    assert record["curve"][-1][2] < meta["val_psnr"]
    _, second = read_safetensors(out)
    assert second["step"] == 20
    # an exact resume from the .state.pt continues the cycle, and its best with it
    record = train(_config(image_folder, out, steps=30, resume=Path(str(out) + ".state.pt"), lr=5.0),
                   log=lambda m: None)
    assert record["best_val_psnr"] >= record["curve"][-1][2]


def test_any_steps_state_exports_to_model_weights_that_load_and_run_the_same(image_folder, tmp_path):
    from panet_cli.loading import load_model
    from panet_cli.training.export import export_state, main

    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=10, val_every=5), log=lambda m: None)
    state_path = Path(str(out) + ".state.pt")
    state = torch.load(state_path, weights_only=True)
    exported = tmp_path / "step10.safetensors"
    meta = export_state(state_path, exported)
    assert meta["step"] == 10
    tensors, stored = read_safetensors(exported)
    assert stored["step"] == 10 and stored["training"]["curve"][-1][0] == 10
    assert stored["val_psnr"] == stored["training"]["curve"][-1][2]
    model = build_network(stored["arch"], stored["config"])
    model.load_state_dict(state["model"])
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        assert torch.equal(load_model(exported).model.eval()(x), model.eval()(x))
    # never over an existing file; a state written before the metadata needs --like
    with pytest.raises(PanetError, match="already exists"):
        export_state(state_path, exported)
    del state["meta"]
    old = tmp_path / "old.state.pt"
    torch.save(state, old)
    with pytest.raises(PanetError, match="--like"):
        export_state(old, tmp_path / "x.safetensors")
    assert export_state(old, tmp_path / "y.safetensors", like=out)["recipe"]["sigma_min"] == 25
    (tmp_path / "junk.state.pt").write_bytes(b"not a pickle")
    with pytest.raises(SystemExit) as failed:
        main([str(tmp_path / "junk.state.pt"), str(tmp_path / "z.safetensors")])
    assert failed.value.code == 1


def test_learning_curve_script_reads_a_training_state_too(image_folder, tmp_path):
    """It read only .safetensors and raised a traceback on a .state.pt."""
    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=10, val_every=5), log=lambda m: None)
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "learning_curve.py"
    result = subprocess.run([sys.executable, str(script), str(out) + ".state.pt"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "step 10," in result.stdout and "| 10 |" in result.stdout


def test_torchrun_two_processes_on_cpu(image_folder, tmp_path):
    out = tmp_path / "ddp.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "panet_cli", "train", str(image_folder), "-o", str(out), "--blocks", "2", "--feats", "8",
           "--window", "16", "--patch", "16", "--batch", "2", "--steps", "4", "--val-every", "2",
           "--precision", "fp32", "--threads", "1"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    _, meta = read_safetensors(out)
    assert meta["step"] in (2, 4)


def test_grey_training_images_are_matlab_y(image_folder):
    """Grey models are scored on MATLAB's 8-bit Y (studio range), so they train on it too."""
    from panet_cli.metrics import y_channel_8bit
    from panet_cli.training.data import list_images, load_uint8

    path = list_images(image_folder)[0]
    grey = load_uint8([path], channels=1)[0]
    rgb = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy()).permute(2, 0, 1)
    expected = y_channel_8bit(rgb.float() / 255) * 255
    assert grey.shape == (1, 40, 48) and grey.dtype == torch.uint8
    assert torch.equal(grey.float(), expected.round())
    assert 16 <= int(grey.min()) and int(grey.max()) <= 235  # studio range, unlike Pillow's "L"


def test_shrink_downscales_training_images_and_is_a_stage_of_its_own(image_folder, tmp_path):
    from panet_cli.training.data import list_images, load_uint8
    from panet_cli.training.loop import _stage_key

    full = load_uint8(list_images(image_folder), 3)
    half = load_uint8(list_images(image_folder), 3, shrink=2)
    assert full[0].shape == (3, 40, 48) and half[0].shape == (3, 20, 24) and half[0].dtype == torch.uint8
    # antialiased: the mean colour is kept
    assert abs(float(full[0].float().mean()) - float(half[0].float().mean())) < 1.0
    out = tmp_path / "m.safetensors"
    assert _stage_key(_config(image_folder, out, steps=1)) != _stage_key(_config(image_folder, out, steps=1, shrink=2))
    record = train(_config(image_folder, out, steps=2, shrink=2, val_crop=16, val_every=2), log=lambda m: None)
    assert record["stages"][-1]["shrink"] == 2


def test_training_device_selection_on_cpu(monkeypatch):
    from panet_cli.errors import PanetError
    from panet_cli.training.loop import process_group_backend, training_device

    assert training_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert training_device("auto") == torch.device("cpu")
        with pytest.raises(PanetError, match="CUDA is not available"):
            training_device("cuda")
    assert process_group_backend(torch.device("cpu")) == "gloo"
    assert process_group_backend(torch.device("cuda", 1)) == "nccl"
    # with GPUs, each torchrun process takes the one of its LOCAL_RANK (an explicit index wins)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert training_device("auto") == torch.device("cuda", 1)
    assert training_device("cuda", local_rank=2) == torch.device("cuda", 0)
    assert training_device("cuda:0") == torch.device("cuda", 0)


def test_training_moves_model_and_batches_to_the_device(image_folder, tmp_path, monkeypatch):
    """Every step's batch reaches the network on the chosen device, under autocast of that device's type."""
    import panet_cli.training.loop as loop

    seen: list[tuple[str, str]] = []
    autocast = torch.autocast

    def recording_autocast(device_type, *args, **kwargs):
        seen.append(("autocast", device_type))
        return autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(loop.torch, "autocast", recording_autocast)
    build = loop.build_network

    def recording_build(arch, config):
        net = build(arch, config)
        net.register_forward_pre_hook(lambda module, args: seen.append(("input", args[0].device.type)))
        return net

    monkeypatch.setattr(loop, "build_network", recording_build)
    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=2, val_every=2, device="cpu"), log=lambda m: None)
    assert out.is_file() and ("autocast", "cpu") in seen and ("input", "cpu") in seen
    assert {kind for kind, device in seen if device != "cpu"} == set()
    from typer.testing import CliRunner

    from cli_results import assert_clean_exit
    from panet_cli.cli.app import app

    bad = CliRunner().invoke(app, ["train", str(image_folder), "-o", str(tmp_path / "x.safetensors"),
                                   "--device", "tpu", "--steps", "1"])
    assert_clean_exit(bad, 1, "unknown device 'tpu'")


def test_training_images_are_read_as_the_task_commands_read_them(tmp_path):
    """EXIF orientation is applied and 16-bit files load: training sees the picture a user sees."""
    import numpy as np
    from PIL import Image

    from panet_cli.training.data import list_images, load_uint8

    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(pixels).save(tmp_path / "a.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray((np.arange(20 * 30, dtype=np.uint16).reshape(20, 30) * 100)).save(tmp_path / "b.png")
    (tmp_path / ".hidden.png").write_bytes(b"not read")
    paths = list_images(tmp_path)
    assert [p.name for p in paths] == ["a.jpg", "b.png"]
    rotated, deep = load_uint8(paths, 3)
    assert rotated.shape == (3, 30, 20)  # displayed upright: 30 rows, 20 columns
    assert rotated[:, :10].float().mean() > 200 and rotated[:, -10:].float().mean() < 50  # white band on top
    assert deep.shape == (3, 20, 30) and int(deep.max()) == round(599 * 100 / 65535 * 255)


def test_colour_augmentation_keeps_luma_and_range_and_changes_hue():
    from panet_cli.training.data import colour_augment

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(16, 3, 8, 8, generator=g) * 0.5 + 0.25  # mid-range: no clipping at 1.8x saturation
    out = colour_augment(rgb, torch.Generator().manual_seed(1))
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    assert out.shape == rgb.shape and out.min() >= 0 and out.max() <= 1
    # the channel order changes the luma; the saturation factor does not: each crop keeps the luma of
    # some permutation of its channels
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    for before, after in zip(rgb, out):
        luma = (after * weights[0]).sum(0)
        assert min(float((luma - (before[list(p)] * weights[0]).sum(0)).abs().max()) for p in perms) < 1e-5
    assert not torch.allclose(out, rgb)
    again = colour_augment(rgb, torch.Generator().manual_seed(1))
    assert torch.equal(out, again)  # seeded: a resumed run draws the same


def test_colour_augmented_training_is_recorded_and_grey_models_ignore_it(image_folder, tmp_path):
    from panet_cli.training.data import CropSampler, list_images, load_uint8

    out = tmp_path / "m.safetensors"
    train(_config(image_folder, out, steps=2, val_every=2, colour_aug=True), log=lambda m: None)
    _, meta = read_safetensors(out)
    assert meta["training"]["stages"][-1]["colour_aug"] is True
    grey = load_uint8(list_images(image_folder), channels=1)
    sampler = CropSampler(grey, 16, seed=0, colour=True)
    assert not sampler.colour and sampler.batch(2).shape == (2, 1, 16, 16)

def _orientations(crop: torch.Tensor) -> list[torch.Tensor]:
    """The crop under every flip and 90-degree rotation."""
    return [torch.rot90(c, k, dims=(1, 2)) for c in (crop, crop.flip(2)) for k in range(4)]


def test_replay_hands_back_the_hardest_crops_once_in_new_orientations():
    g = torch.Generator().manual_seed(0)
    fresh = torch.rand(6, 3, 8, 8, generator=g)
    losses = torch.tensor([0.1, 0.9, 0.2, 0.8, 0.3, 0.05])
    replay = HardCropReplay(2, torch.Generator().manual_seed(1))
    assert replay.take() is None  # nothing seen yet
    replay.remember(fresh, losses)
    back = replay.take()
    assert back is not None and back.shape == (2, 3, 8, 8)
    for crop, source in zip(back, (fresh[1], fresh[3])):  # losses 0.9 and 0.8
        assert any(torch.equal(crop, o) for o in _orientations(source))
    assert replay.take() is None  # each hard crop is replayed once


def test_replay_of_zero_crops_is_off_and_a_negative_count_is_refused():
    replay = HardCropReplay(0, torch.Generator())
    replay.remember(torch.rand(4, 3, 8, 8), torch.rand(4))
    assert replay.take() is None
    with pytest.raises(ValueError):
        HardCropReplay(-1, torch.Generator())


def test_training_with_hard_crops_keeps_the_batch_size_and_records_the_option(image_folder, tmp_path, monkeypatch):
    fresh_sizes: list[int] = []
    batch_sizes: list[int] = []
    sample, make_pair = CropSampler.batch, loop.make_pair

    def counting_batch(self, size):
        fresh_sizes.append(size)
        return sample(self, size)

    def counting_pair(recipe, clean, generator, validation=False):
        if not validation:
            batch_sizes.append(clean.shape[0])
        return make_pair(recipe, clean, generator, validation=validation)

    monkeypatch.setattr(CropSampler, "batch", counting_batch)
    monkeypatch.setattr(loop, "make_pair", counting_pair)
    record = loop.train(_config(image_folder, tmp_path / "m.safetensors", steps=4, val_every=4, hard_crops=2),
                        log=lambda m: None)
    assert batch_sizes == [4, 4, 4, 4]
    assert fresh_sizes == [4, 2, 2, 2]  # from the second step on, 2 of the 4 crops are replays
    assert record["stages"][-1]["hard_crops"] == 2


def test_hard_crops_must_leave_room_for_fresh_ones(image_folder, tmp_path):
    with pytest.raises(PanetError, match="hard-crops"):
        loop.train(_config(image_folder, tmp_path / "m.safetensors", steps=2, batch=4, hard_crops=4), log=lambda m: None)


def test_l2_loss_trains_on_the_squared_error_and_is_recorded(image_folder, tmp_path):
    """--loss l2 (PSNR's own error, for fine-tuning) reaches the step. Same seed, so the same network and
    batch: the mean squared error lies between the squared mean absolute error (Jensen) and, with errors
    under 1, well below the mean absolute error itself."""
    from typer.testing import CliRunner

    from panet_cli.cli.app import app

    logged: dict[str, list[str]] = {"l1": [], "l2": []}
    for name, lines in logged.items():
        torch.manual_seed(0)
        record = train(_config(image_folder, tmp_path / f"{name}.safetensors", steps=1, val_every=1, loss=name),
                       log=lines.append)
        assert record["stages"][-1]["loss"] == name
    first_loss = {name: float(next(m for m in lines if m.startswith("step 1 ")).split()[3]) for name, lines in logged.items()}
    assert first_loss["l1"] ** 2 <= first_loss["l2"] < 0.5 * first_loss["l1"], first_loss
    bad = CliRunner().invoke(app, ["train", str(image_folder), "-o", str(tmp_path / "x.safetensors"), "--loss", "l3"])
    assert bad.exit_code != 0 and "l1, l2" in bad.output
    with pytest.raises(PanetError, match="unknown loss 'l3'"):  # the library refuses it before training, too
        train(_config(image_folder, tmp_path / "x.safetensors", steps=1, loss="l3"), log=lambda m: None)


def test_auto_precision_keeps_fp32_without_native_bf16_however_the_clock_reads():
    # a step timed under load once made bf16 look faster on a CPU that emulates it (1.8x slower there)
    seen: list[bool] = []

    def bf16_looks_faster(use_bf16: bool) -> None:
        seen.append(use_bf16)
        time.sleep(0.0 if use_bf16 else 0.01)

    assert loop.choose_precision("auto", bf16_looks_faster, native_bf16=False) is False
    assert seen == []  # the capability decided: no step was timed
    assert loop.choose_precision("auto", bf16_looks_faster, native_bf16=True) is True
    assert loop.choose_precision("bf16", bf16_looks_faster, native_bf16=False) is True
