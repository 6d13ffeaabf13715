"""The training loop: staged, resumable, single process or DistributedDataParallel under torchrun."""

from __future__ import annotations

import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from panet_cli.devices import auto_precision
from panet_cli.errors import PanetError
from panet_cli.loading.architectures import build_network
from panet_cli.loading.checkpoint import read_safetensors, save_safetensors
from panet_cli.metrics import psnr
from panet_cli.tasks import task_spec
from panet_cli.training.data import CropSampler, center_crops, list_images, load_uint8, split_holdout
from panet_cli.training.hard_crops import HardCropReplay
from panet_cli.training.tasks import DegradationRecipe, make_pair
from panet_cli.training.transfer import initialise_from


# Per-pixel losses, by their --loss name. L1 trains faster and is what the recipes start with; L2 is the
# quantity PSNR measures (and the mean, not the median, of what the input allows), for the end of a schedule.
PIXEL_LOSSES: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": torch.abs,
    "l2": torch.square,
}


@dataclass
class TrainConfig:
    """One training stage. ``steps`` is the total step count to reach (resumed runs continue)."""

    data: Path | list[Path]
    out: Path
    task: str = "denoise"
    arch: str = "PANet"
    network: dict[str, Any] = field(default_factory=dict)
    recipe: DegradationRecipe = field(default_factory=lambda: DegradationRecipe("denoise"))
    attention: bool = True
    patch: int = 48
    shrink: int = 1
    shrink_jpeg_only: bool = False
    sample_by_area: bool = False
    colour_aug: bool = False
    batch: int = 16
    hard_crops: int = 0  # crops per batch replayed from the previous step's hardest (see hard_crops.py)
    loss: str = "l1"  # a key of PIXEL_LOSSES
    steps: int = 1000
    lr: float = 2e-4
    lr_min: float = 1e-6
    warmup: int = 0  # steps of linear ramp to ``lr`` at the start of the stage
    val_every: int = 250
    val_holdout: int = 8
    val_crop: int = 96
    precision: str = "auto"
    threads: int = 0
    compile: bool = False
    seed: int = 0
    resume: Path | None = None
    init_from: Path | None = None
    name: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps; under torchrun, auto/cuda is cuda:LOCAL_RANK

    @property
    def folders(self) -> list[Path]:
        """``data`` as a list: one folder or several."""
        return list(self.data) if isinstance(self.data, (list, tuple)) else [self.data]


def training_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """The device to train on: as the task commands' ``--device``; one GPU per process under torchrun."""
    from panet_cli.devices import select_device

    device = select_device(name)
    if device.type == "cuda" and device.index is None:
        rank = int(os.environ.get("LOCAL_RANK", "0")) if local_rank is None else local_rank
        device = torch.device("cuda", rank % torch.cuda.device_count())
    return device


def process_group_backend(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes (and anything else)."""
    return "nccl" if device.type == "cuda" else "gloo"


def _distributed(device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group(process_group_backend(device))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def cosine_lr(step: int, start: int, end: int, lr: float, lr_min: float, warmup: int = 0) -> float:
    """Cosine decay from ``lr`` at ``start`` to ``lr_min`` at ``end``, after ``warmup`` steps of linear ramp.

    The ramp is for resuming trained weights with a fresh Adam: its first updates are about ``lr`` per
    weight whatever the gradient, which cost the shipped demosaicer 0.47 dB of validation PSNR in
    its first 10 steps at 6e-5.
    """
    t = min(1.0, max(0.0, (step - start) / max(1, end - start)))
    cosine = lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t))
    if warmup > 0 and step - start <= warmup:
        return cosine * max(step - start, 0) / warmup
    return cosine


def choose_precision(requested: str, step_fn: Callable[[bool], None], native_bf16: bool) -> bool:
    """Whether to train under bf16 autocast. ``auto`` keeps fp32 where the device has no native bf16 and
    otherwise times two steps of each and keeps the faster.

    Without native bf16, autocast measured 1.8x (AVX-512 without BF16) to 17x (AVX2) slower than fp32, but a
    single timed step under load once chose it anyway: the capability decides first, the clock only confirms.
    With native bf16 (AVX512_BF16, 1 thread) a HalfResPANet demosaicing step took 4.3 s against 7.1 s in fp32,
    with the same validation PSNR 50 steps later.
    """
    if requested != "auto":
        return requested == "bf16"
    if not native_bf16:
        return False
    timings = {}
    for use_bf16 in (False, True):
        step_fn(use_bf16)  # warm-up
        runs = []
        for _ in range(2):
            t = time.perf_counter()
            step_fn(use_bf16)
            runs.append(time.perf_counter() - t)
        timings[use_bf16] = min(runs)
    return timings[True] < 0.8 * timings[False]


def _restore(config: TrainConfig, model: nn.Module) -> tuple[int, dict[str, Any], dict | None]:
    """Load weights (and optimizer state, for a training-state file) from ``config.resume``."""
    if config.resume is not None and config.init_from is not None:
        raise PanetError("--resume continues a model and --init-from starts a new one from another: not both")
    if config.init_from is not None:
        source = initialise_from(model, config.init_from)
        return 0, {"initialised_from": source, "attention_trained": source["attention_trained"]}, None
    if config.resume is None:
        return 0, {}, None
    path = Path(config.resume)
    if path.suffix == ".safetensors":
        tensors, meta = read_safetensors(path)
        model.load_state_dict(tensors, strict=True)
        return int(meta.get("step", 0)), meta.get("training", {}), None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"], strict=True)
    return int(state["step"]), json.loads(state["training"]), state["optimizer"]


def train(config: TrainConfig, log: Callable[[str], None] = print, progress: Any = None) -> dict[str, Any]:
    """Run (or continue) one stage; returns the final training record.

    Writes ``config.out`` (best validation PSNR, model only, safetensors with metadata) and
    ``config.out`` + ``.state.pt`` (latest weights and optimizer, for an exact resume).
    """
    if not 0 <= config.hard_crops < config.batch:
        raise PanetError(f"--hard-crops must be at least 0 and below the batch size ({config.batch})")
    if config.loss not in PIXEL_LOSSES:
        raise PanetError(f"unknown loss {config.loss!r}: use one of {', '.join(PIXEL_LOSSES)}")
    device = training_device(config.device)
    rank, world = _distributed(device)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed + rank)
    random.seed(config.seed + rank)
    train_paths, _ = split_holdout([list_images(f) for f in config.folders], config.val_holdout)
    train_images = load_uint8(train_paths, _channels(config), config.shrink, config.shrink_jpeg_only)
    sampler = CropSampler(train_images, config.patch, seed=config.seed * 1000 + rank, by_area=config.sample_by_area,
                          colour=config.colour_aug)
    val_input, val_target = (t.to(device) for t in validation_set(config))

    model = build_network(config.arch, config.network)
    start_step, record, optimizer_state = _restore(config, model)
    attention = model.attention
    if config.attention and not record.get("attention_trained", False):
        # Bring the attention in without disturbing a trained backbone: zero assembly => zero output.
        nn.init.zeros_(attention.conv_assembly[0].weight)
        nn.init.zeros_(attention.conv_assembly[0].bias)
    attention.enabled = config.attention
    # NHWC: oneDNN's convolutions measured 1.2x faster per training step (bf16, 2 threads) than NCHW.
    model.to(device=device, memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=config.lr)
    if optimizer_state is not None and record.get("stage_key") == _stage_key(config):
        optimizer.load_state_dict(optimizer_state)
    net: nn.Module = model
    if world > 1:
        # a bypassed attention leaves parameters without gradients
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                  find_unused_parameters=not config.attention)
    if config.compile:
        # Fuses the elementwise work (PReLU, residual adds) around oneDNN's convolutions: 1.3x per step
        # measured (16 blocks, bf16, 2 threads). Validation and saving use ``model``, which shares the weights.
        net = torch.compile(net)

    gen = torch.Generator().manual_seed(config.seed * 7919 + rank + start_step)
    replay = HardCropReplay(config.hard_crops, torch.Generator().manual_seed(config.seed * 104729 + rank + start_step))

    def one_step(use_bf16: bool) -> float:
        hard = replay.take()
        fresh = sampler.batch(config.batch - (0 if hard is None else hard.shape[0]))
        clean = fresh if hard is None else torch.cat([fresh, hard])
        inputs, target = make_pair(config.recipe, clean, gen)  # on the CPU (JPEG is Pillow's)
        inputs = inputs.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        target = target.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = net(inputs)
        per_crop = PIXEL_LOSSES[config.loss](out.float() - target).flatten(1).mean(1)  # crops are one size
        loss = per_crop.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        replay.remember(fresh, per_crop[: fresh.shape[0]])
        return loss.item()

    if start_step >= config.steps:
        log(f"already at step {start_step} >= {config.steps}; nothing to do")
        return record
    model.train()
    native_bf16 = auto_precision(device) == torch.bfloat16
    if config.precision == "auto" and native_bf16:
        # the timing steps train a little: put weights and optimizer back afterwards
        snapshot = copy.deepcopy((model.state_dict(), optimizer.state_dict()))
        use_bf16 = choose_precision("auto", one_step, native_bf16)
        model.load_state_dict(snapshot[0])
        optimizer.load_state_dict(snapshot[1])
    else:  # nothing to time: no copy of the weights and optimizer
        use_bf16 = choose_precision(config.precision, one_step, native_bf16)
    log(f"training {config.arch} {config.network} on {len(train_images)} images, {device}, precision {'bf16' if use_bf16 else 'fp32'}")

    record.setdefault("curve", [])
    record.setdefault("stages", [])
    record.setdefault("cpu_hours", 0.0)
    # "Best" is per stage and cycle: a new stage (e.g. the attention switched on), or a new cycle resumed
    # from model-only weights (Adam reset), must write its own weights even while still below the previous
    # best, or its file would never appear. Only an exact resume (a .state.pt) carries the best over.
    same_stage = record.get("stage_key") == _stage_key(config) and optimizer_state is not None
    record["stage_key"] = _stage_key(config)
    record["stages"].append({k: v for k, v in asdict(config).items() if k not in ("resume", "init_from", "data", "out", "recipe")})
    best = record.get("best_val_psnr", -math.inf) if same_stage else -math.inf
    cpu_start = time.process_time()
    cpu_hours_start = record["cpu_hours"]
    stage_start = start_step
    losses: list[float] = []
    if rank == 0 and not record["curve"]:
        record["curve"].append([start_step, 0.0, round(validate(model, val_input, val_target, config.task), 4)])
    for step in range(start_step + 1, config.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, stage_start, config.steps, config.lr, config.lr_min, config.warmup)
        losses.append(one_step(use_bf16))
        if progress is not None:
            progress(step, config.steps, losses[-1])
        if rank == 0 and (step % config.val_every == 0 or step == config.steps):
            cpu_h = cpu_hours_start + (time.process_time() - cpu_start) / 3600 * world
            val = validate(model, val_input, val_target, config.task)
            record["cpu_hours"] = cpu_h
            record["curve"].append([step, round(cpu_h, 4), round(val, 4)])
            record["attention_trained"] = record.get("attention_trained", False) or config.attention
            loss_mean = sum(losses) / len(losses)
            losses.clear()
            log(f"step {step}  loss {loss_mean:.5f}  val PSNR {val:.3f} dB  CPU h {cpu_h:.3f}")
            if val > best:
                best = val
                record["best_val_psnr"] = round(val, 4)
                save_model(config, model, step, record, val)
            # the model file's metadata too (less the record, stored once), so any step's state can be
            # exported (training.export)
            meta = {k: v for k, v in model_metadata(config, step, record, val).items() if k != "training"}
            torch.save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "training": json.dumps(record), "meta": json.dumps(meta)},
                str(config.out) + ".state.pt",
            )
    if dist.is_initialized():
        dist.barrier()
    return record


def _stage_key(config: TrainConfig) -> str:
    """Optimizer state and "best" carry over only within a stage (same attention, patch and data scale)."""
    key: list = [config.attention, config.patch]
    return json.dumps(key + [config.shrink] if config.shrink > 1 else key)


def _channels(config: TrainConfig) -> int:
    return 1 if config.network.get("n_colors", 3) == 1 else 3


def validation_set(config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) that every validation of a run scores: the centre crops of the images held out of
    each folder, degraded with a fixed seed, so every point of a curve is comparable with the others and
    with a classical method scored on the same crops (``benchmarks/val_baselines.py``)."""
    _, val_paths = split_holdout([list_images(f) for f in config.folders], config.val_holdout)
    val_images = load_uint8(val_paths, _channels(config), config.shrink, config.shrink_jpeg_only)
    val_clean = center_crops(val_images, min(config.val_crop, *(min(v.shape[1:]) for v in val_images)))
    return make_pair(config.recipe, val_clean, torch.Generator().manual_seed(1234), validation=True)


@torch.no_grad()
def validate(model: nn.Module, inputs: torch.Tensor, target: torch.Tensor, task: str) -> float:
    was_training = model.training
    model.eval()
    out = torch.cat([model(inputs[i : i + 1]) for i in range(inputs.shape[0])]).clamp(0, 1)
    model.train(was_training)
    if task_spec(task).y_channel:
        return psnr(out, target, shave=model.scale, y_channel=True)
    return psnr(out, target)


def model_metadata(config: TrainConfig, step: int, record: dict[str, Any], val: float) -> dict[str, Any]:
    """Everything needed to rebuild and judge the model at ``step``: the metadata of our weights files."""
    meta = {
        "arch": config.arch,
        "config": config.network,
        "task": config.task,
        "step": step,
        "val_psnr": round(val, 4),
        "attention_enabled": config.attention,
        "recipe": asdict(config.recipe),
        "training": {k: v for k, v in record.items()},
        "data": ", ".join(Path(f).name for f in config.folders),
        "provenance": "trained by the panet project (panet train)",
    }
    if task_spec(config.task).scaled:
        meta["scale"] = config.recipe.scale
    return meta


def save_model(config: TrainConfig, model: nn.Module, step: int, record: dict[str, Any], val: float) -> None:
    """Model-only safetensors with its metadata (see :func:`model_metadata`)."""
    save_safetensors(config.out, model.state_dict(), model_metadata(config, step, record, val))
