"""The model registry: the shipped manifest itself, model choice per task, import/remove, maintainer refresh."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hub_server import hub_entry, write_manifest, write_tiny_model
from panet_cli import paths, registry
from panet_cli.cli.app import app
from panet_cli.errors import CheckpointError, IncompatibleModel, ModelUnavailable, PanetError
from panet_cli.loading.architectures import NETWORKS, build_network

SHARED = Path(__file__).resolve().parents[2] / "shared"
OFFICIAL = SHARED / "fixtures" / "official"
needs_shared = pytest.mark.skipif(not OFFICIAL.is_dir(), reason="../shared/fixtures/official is absent")
REAL_MANIFEST = Path(__file__).resolve().parents[1] / "weights" / "manifest.json"
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"
REPO = "test/panet-models"


# ---------------------------------------------------------------- the shipped manifest


def real_entries() -> list[dict]:
    return json.loads(REAL_MANIFEST.read_text())["models"]


@pytest.fixture
def real_manifest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PANET_MANIFEST", str(REAL_MANIFEST))
    monkeypatch.setenv("PANET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))


def test_manifest_entries_are_complete() -> None:
    entries = real_entries()
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert e["task"] in registry.TASKS, e["name"]
        assert e["arch"] in NETWORKS, e["name"]
        assert e["licence"] and e["provenance"] and e["description"], e["name"]
        source = e["source"]
        assert bool(source.get("shipped")) != bool(source.get("manual")), e["name"]
        if source.get("shipped"):
            assert source["hub"]["filename"], e["name"]
        if e["task"] == "sr":
            assert e["scale"] in (2, 3, 4), e["name"]
        elif e["task"] in ("denoise", "car"):
            assert e.get("level") is not None, e["name"]
        if e["origin"] == "authors":
            assert e["scores"]["paper"], e["name"]


def test_published_models_are_all_listed() -> None:
    published = {(e["task"], e.get("level"), e.get("scale")) for e in real_entries() if e["origin"] == "authors"}
    expected = {("denoise", s, None) for s in (10, 30, 50, 70)} | {("car", q, None) for q in (10, 20, 30, 40)}
    expected |= {("sr", None, s) for s in (2, 3, 4)} | {("demosaic", None, None)}
    assert published == expected
    files = {e["source"]["manual"]["file"] for e in real_entries() if e["origin"] == "authors"}
    assert {"model_N10.pt", "model_N70.pt", "Q10.pt", "Q40.pt", "model_x2.pt", "model_x4.pt"} <= files


def test_one_default_per_task_colour_and_scale() -> None:
    groups: dict[tuple, list[str]] = {}
    for e in real_entries():
        if e.get("default"):
            key = (e["task"], e.get("scale") if e["task"] == "sr" else e.get("colors"))
            groups.setdefault(key, []).append(e["name"])
    assert all(len(v) == 1 for v in groups.values()), groups
    assert {k[0] for k in groups} == set(registry.TASKS)


@pytest.mark.parametrize("entry", [e for e in real_entries() if e["origin"] == "authors"], ids=lambda e: e["name"])
def test_published_parameter_counts_match_their_architecture(entry: dict) -> None:
    with torch.device("meta"):
        model = build_network(entry["arch"], entry["config"])
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert registry.count_parameters(shapes) == entry["params"]
    if OFFICIAL.is_dir():
        if entry["arch"] == "PAEDSR":
            kind = f"paedsr_x{entry['scale']}"
        else:
            kind = "panet_gray" if entry["colors"] == 1 else "panet_rgb"
        keys = json.loads((OFFICIAL / f"keys_{kind}_full.json").read_text())
        assert keys == shapes
        assert entry["approx_size"] == sum(math.prod(s) for s in keys.values()) * 4


@pytest.mark.parametrize("entry", [e for e in real_entries() if e["source"].get("shipped")], ids=lambda e: e["name"])
def test_shipped_files_match_the_manifest(entry: dict) -> None:
    file = REAL_MANIFEST.parent / entry["source"]["shipped"]
    if not file.is_file():
        pytest.skip(f"{file.name} is not trained yet")
    refresh = "run python -m panet_cli.registry --refresh-shipped"
    assert entry["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest(), refresh
    assert entry["size"] == file.stat().st_size
    shapes, meta = registry.read_safetensors_header(file)
    assert meta["task"] == entry["task"] and meta["arch"] == entry["arch"] and meta["config"] == entry["config"]


def test_real_manifest_resolves_without_network(real_manifest: None) -> None:
    """Absent files are a status, never an error; the message says how to get the model."""
    for spec in registry.all_specs():
        assert registry.status(spec) in registry.STATUSES
    with pytest.raises(ModelUnavailable, match=r"panet models import model_x4\.pt --name official-sr-x4"):
        registry.find_model("sr", name="official-sr-x4", download=False)


# ---------------------------------------------------------------- choosing models (test manifest)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A manifest with a shipped blind denoiser, a hub-only colour JPEG model and a manual level-specific one."""
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = write_tiny_model(weights / "blind.safetensors")
    hub_bytes = write_tiny_model(tmp_path / "hub-car.safetensors", task="car", seed=1)
    gray = write_tiny_model(weights / "car-gray.safetensors", task="car", colors=1, seed=2)
    models = [
        {**hub_entry("blind", shipped, level=[0, 50]), "source": {"shipped": "blind.safetensors",
                                                                  "hub": {"filename": "blind.safetensors"}}},
        {**hub_entry("car-gray", gray, task="car", level=[10, 60], colors=1),
         "source": {"shipped": "car-gray.safetensors"}},
        hub_entry("car-color", hub_bytes, task="car", level=[10, 60], colors=3),
        {"name": "paper-s30", "task": "denoise", "arch": "PANet", "level": 30, "colors": 3, "origin": "authors",
         "source": {"manual": {"file": "model_N30.pt", "where": "the authors"}}},
        {"name": "paper-sr-x2", "task": "sr", "arch": "PAEDSR", "scale": 2, "colors": 3, "origin": "authors",
         "source": {"manual": {"file": "model_x2.pt", "where": "the authors"}}},
    ]
    manifest = weights / "manifest.json"
    write_manifest(manifest, models, repo=REPO, revision=COMMIT)
    monkeypatch.setenv("PANET_MANIFEST", str(manifest))
    monkeypatch.setenv("PANET_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing may be downloaded here
    for name in ("PANET_HUB_REPO", "PANET_HUB_REVISION", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    return {"weights": weights, "hub_bytes": hub_bytes, "tmp": tmp_path}


def put_in_hub_cache(tmp: Path, filename: str, data: bytes) -> Path:
    """Lay a file out the way hf_hub_download leaves it (blob + snapshot link)."""
    repo_dir = tmp / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = repo_dir / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True)
    link.symlink_to(blob)
    return link


def test_statuses(setup: dict) -> None:
    status = {s.name: registry.status(s) for s in registry.all_specs()}
    assert status == {"blind": "shipped", "car-gray": "shipped", "car-color": "downloadable",
                      "paper-s30": "manual", "paper-sr-x2": "manual"}
    put_in_hub_cache(setup["tmp"], "car-color.safetensors", setup["hub_bytes"])
    assert registry.status(registry.get_spec("car-color")) == "cached"


def test_default_and_level_specific_choice(setup: dict) -> None:
    blind = setup["weights"] / "blind.safetensors"
    assert registry.find_model("denoise") == blind
    assert registry.find_model("denoise", level=30) == blind  # the sigma-30 model is not installed
    imported = setup["tmp"] / "home" / "models" / "paper-s30.safetensors"
    imported.parent.mkdir(parents=True)
    shutil.copy(blind, imported)
    user = {"format": 1, "models": [{"name": "paper-s30", "imported": {"file": imported.name,
                                                                        "sha256": registry.hub.sha256_of(imported)}}]}
    paths.user_manifest_path().write_text(json.dumps(user))
    assert registry.status(registry.get_spec("paper-s30")) == "imported"
    assert registry.find_model("denoise", level=30) == imported
    assert registry.find_model("denoise", level=25) == blind


def test_colour_preference_and_cache(setup: dict) -> None:
    gray = setup["weights"] / "car-gray.safetensors"
    assert registry.find_model("car", level=20) == gray
    assert registry.find_model("car", colors=3, download=False) == gray  # colour model not here: the gray one
    cached = put_in_hub_cache(setup["tmp"], "car-color.safetensors", setup["hub_bytes"])
    assert registry.find_model("car", colors=3, download=False) == cached
    assert registry.find_model("car", colors=1) == gray


def test_corrupted_cache_file_is_deleted(setup: dict) -> None:
    cached = put_in_hub_cache(setup["tmp"], "car-color.safetensors", setup["hub_bytes"][:-1] + b"\0")
    with pytest.raises(ModelUnavailable, match="checksum.*deleted"):
        registry.find_model("car", name="car-color")
    assert not cached.exists() and not cached.resolve().exists()


def test_not_installed_message_names_file_and_import(setup: dict) -> None:
    with pytest.raises(ModelUnavailable) as info:
        registry.find_model("car", name="car-color", download=False)
    message = str(info.value)
    for needle in ("car-color.safetensors", REPO, COMMIT, "panet models import PATH --name car-color"):
        assert needle in message
    assert "\n" not in message


def test_names_paths_and_wrong_tasks(setup: dict) -> None:
    with pytest.raises(ModelUnavailable, match="did you mean blind"):
        registry.find_model("denoise", name="blnd")
    own = setup["weights"] / "blind.safetensors"
    assert registry.find_model("denoise", name=str(own)) == own
    with pytest.raises(IncompatibleModel, match="car-gray is for car"):
        registry.find_model("denoise", name="car-gray")
    with pytest.raises(ModelUnavailable, match=r"x3 sr model is known"):
        registry.find_model("sr", scale=3)
    with pytest.raises(PanetError, match="unknown task"):
        registry.find_model("deblur")


def test_modified_shipped_file_is_refused(setup: dict) -> None:
    with (setup["weights"] / "blind.safetensors").open("ab") as f:
        f.write(b"x")
    with pytest.raises(CheckpointError, match="--refresh-shipped"):
        registry.find_model("denoise")


def test_refresh_shipped(setup: dict) -> None:
    manifest = setup["weights"] / "manifest.json"
    data = json.loads(manifest.read_text())
    data["models"][0].update(sha256=None, size=None, config=None, level=None)
    manifest.write_text(json.dumps(data))
    changes = registry.refresh_shipped(manifest)
    assert "blind" in [c.split(":")[0] for c in changes]
    entry = json.loads(manifest.read_text())["models"][0]
    file = setup["weights"] / "blind.safetensors"
    assert entry["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest() and entry["size"] == file.stat().st_size
    assert entry["config"] == {"n_resblocks": 2, "n_feats": 8, "n_colors": 3}
    assert entry["level"] == [0.0, 50.0] and entry["scores"]["validation"]["PSNR"] == 30.5
    with torch.device("meta"):
        expected = sum(p.numel() for p in build_network("PANet", entry["config"]).parameters() if p.requires_grad)
    assert entry["params"] == expected
    assert registry.refresh_shipped(manifest) == []  # idempotent


def test_window_choice_through_the_maintainer_command(setup: dict, capsys: pytest.CaptureFixture) -> None:
    """``python -m panet_cli.registry --window FILE W:OV --why ... --refresh-shipped``: file and manifest follow."""
    from panet_cli.registry.__main__ import _main

    manifest, file = setup["weights"] / "manifest.json", setup["weights"] / "blind.safetensors"
    with pytest.raises(SystemExit) as stop:
        _main(["--window", str(file), "4:0", "--manifest", str(manifest)])
    assert stop.value.code == 2 and "--why" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main(["--window", str(file), "four", "--why", "x", "--manifest", str(manifest)])
    assert "W:OVERLAP" in capsys.readouterr().err
    assert _main(["--window", str(file), "4:0", "--why", "measured", "--refresh-shipped", "--manifest",
                  str(manifest)]) == 0
    assert "0/0 -> 4/0" in capsys.readouterr().out
    entry = json.loads(manifest.read_text())["models"][0]
    assert entry["config"]["window"] == 4 and entry["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert registry.find_model("denoise") == file  # the changed file is accepted, not refused as modified


# ---------------------------------------------------------------- import / remove through the CLI


runner = CliRunner()


@needs_shared
def test_import_published_checkpoint_gives_golden_output(setup: dict) -> None:
    result = runner.invoke(app, ["models", "import", str(OFFICIAL / "paedsr_x2_r2.pt"), "--name", "x"])
    assert result.exit_code == 0, result.output
    path = registry.find_model("sr", name="x", scale=2)
    assert path.parent == setup["tmp"] / "home" / "models"
    from panet_cli.loading import load_model

    desc = load_model(path)
    assert (desc.arch, desc.scale, desc.tasks) == ("PAEDSR", 2, ("sr",))
    with torch.no_grad():
        out = desc.model(torch.from_numpy(np.load(OFFICIAL / "paedsr_x2_r2_in.npy")))
    np.testing.assert_allclose(out.numpy(), np.load(OFFICIAL / "paedsr_x2_r2_out.npy"), atol=1e-4)
    assert registry.find_model("sr", scale=2) == path  # the only x2 model installed
    again = runner.invoke(app, ["models", "import", str(OFFICIAL / "paedsr_x2_r2.pt"), "--name", "x"])
    assert again.exit_code == 1 and "--force" in again.stderr

    # the path every command takes: a model name through restore()
    inference = pytest.importorskip("panet_cli.inference")
    image = np.load(OFFICIAL / "paedsr_x2_r2_in.npy")[0].transpose(1, 2, 0)
    restored = inference.restore(image, "sr", model="x", scale=2, device="cpu")
    golden = np.load(OFFICIAL / "paedsr_x2_r2_out.npy")[0].transpose(1, 2, 0)
    np.testing.assert_allclose(restored, np.clip(golden, 0, 1), atol=1e-4)


@needs_shared
def test_published_file_name_completes_its_entry(setup: dict) -> None:
    renamed = setup["tmp"] / "model_N30.pt"
    shutil.copy(OFFICIAL / "panet_rgb_r4.pt", renamed)
    result = runner.invoke(app, ["models", "import", str(renamed)])
    assert result.exit_code == 0, result.output
    spec = registry.get_spec("paper-s30")
    assert registry.status(spec) == "imported" and spec.tasks == ("denoise",)
    assert registry.find_model("denoise", level=30) == paths.user_models_dir() / "paper-s30.safetensors"
    listed = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    assert {m["name"]: m["status"] for m in listed}["paper-s30"] == "imported"

    removed = runner.invoke(app, ["models", "remove", "paper-s30"])
    assert removed.exit_code == 0 and "removed paper-s30" in removed.stderr
    assert registry.status(registry.get_spec("paper-s30")) == "manual"


@needs_shared
def test_import_refusals(setup: dict) -> None:
    wrong_kind = runner.invoke(app, ["models", "import", str(OFFICIAL / "paedsr_x2_r2_in.npy"), "--name", "y"])
    assert wrong_kind.exit_code == 1
    assert len(wrong_kind.stderr.strip().splitlines()) == 1 and "refused" in wrong_kind.stderr
    ambiguous = runner.invoke(app, ["models", "import", str(OFFICIAL / "panet_rgb_r4.pt")])
    assert ambiguous.exit_code == 1 and "--task" in ambiguous.stderr
    sr_as_denoise = runner.invoke(app, ["models", "import", str(OFFICIAL / "paedsr_x2_r2.pt"), "--task", "denoise"])
    assert sr_as_denoise.exit_code == 1 and "not denoise" in sr_as_denoise.stderr
    taken = runner.invoke(app, ["models", "import", str(OFFICIAL / "panet_rgb_r4.pt"), "--task", "denoise",
                                "--name", "blind"])
    assert taken.exit_code == 1 and "ships with panet" in taken.stderr
    wrong_arch = runner.invoke(app, ["models", "import", str(OFFICIAL / "panet_rgb_r4.pt"), "--name", "paper-sr-x2",
                                     "--task", "denoise"])
    assert wrong_arch.exit_code == 1 and "does not fit paper-sr-x2" in wrong_arch.stderr
    assert not paths.user_manifest_path().exists()


def test_remove_refuses_shipped_and_absent(setup: dict) -> None:
    shipped = runner.invoke(app, ["models", "remove", "blind"])
    assert shipped.exit_code == 1 and "ships with panet" in shipped.stderr
    absent = runner.invoke(app, ["models", "remove", "paper-s30"])
    assert absent.exit_code == 1 and "not installed" in absent.stderr
    cached = put_in_hub_cache(setup["tmp"], "car-color.safetensors", setup["hub_bytes"])
    assert runner.invoke(app, ["models", "remove", "car-color"]).exit_code == 0
    assert not cached.exists() and not cached.resolve().exists()


def test_info_shows_the_whole_entry(setup: dict) -> None:
    result = runner.invoke(app, ["models", "info", "car-color", "--json"])
    info = json.loads(result.stdout)
    assert info["status"] == "downloadable" and info["sha256"] == hashlib.sha256(setup["hub_bytes"]).hexdigest()
    assert info["hub_file"] == {"repo": REPO, "filename": "car-color.safetensors", "revision": COMMIT}
    unknown = runner.invoke(app, ["models", "info", "car-colour"])
    assert unknown.exit_code == 1 and "did you mean car-color" in unknown.stderr


# ---------------------------------------------------------------- the shipped weights work out of the box

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "clean_108005.png"


def _example_crop(size: int = 64) -> "np.ndarray":
    import numpy as np
    from PIL import Image

    with Image.open(EXAMPLE) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)[:size, :size] / 255


# (task, options) -> what a user had without panet, and the least gain over it we accept
SHIPPED_DEFAULTS = {
    "denoise": ({"level": 25}, 3.0),
    "sr": ({"scale": 4}, 0.3),
    "sr-x2": ({"scale": 2}, 0.3),
    "sr-x3": ({"scale": 3}, 0.3),
    "car": ({"level": 10}, 0.5),
    # a colour JPEG through `panet car`'s default for colour images (its chroma stays as decoded)
    "car-color": ({"level": 10}, 0.3),
    "demosaic": ({}, 1.0),
}


@pytest.mark.parametrize("case", list(SHIPPED_DEFAULTS))
def test_shipped_default_beats_the_input(real_manifest: None, case: str) -> None:
    """The task's default model is found offline and improves on what the user had: the noisy file,
    bicubic upscaling, the decoded JPEG, bilinear demosaicing."""
    import numpy as np
    import torch

    from panet_cli import degradations
    from panet_cli.inference import restore
    from panet_cli.metrics import psnr
    from panet_cli.networks.panet import bayer_bilinear_demosaic

    task = case.split("-")[0]
    kwargs, margin = SHIPPED_DEFAULTS[case]
    scale = kwargs.get("scale")
    grey = case == "car"
    colors = {"car": 1, "car-color": 3}.get(case)
    spec = next(s for s in registry.candidates(task, scale=scale, colors=colors) if s.default)
    if registry.status(spec) != "shipped":
        pytest.skip(f"{spec.name} is not trained yet")
    torch.set_num_threads(1)
    clean = _example_crop(60 if task == "sr" else 64)  # 60: a multiple of every SR scale
    chw = torch.from_numpy(clean).permute(2, 0, 1)[None]
    if task == "denoise":
        degraded = degradations.add_gaussian_noise(chw, torch.tensor([25.0]), torch.Generator().manual_seed(0))
        baseline = degraded
    elif task == "sr":
        degraded = degradations.quantize_8bit(degradations.bicubic_downscale(chw, scale))
        baseline = degradations.bicubic_upscale(degraded, scale).clamp(0, 1)
    elif task == "car":
        if grey:
            chw = chw.mean(dim=1, keepdim=True)
            clean = chw[0].permute(1, 2, 0).numpy()
        degraded = degradations.jpeg_compress(chw[0], 10)[None]
        baseline = degraded
    else:
        degraded = degradations.bayer_mosaic(chw, "RGGB")
        baseline = bayer_bilinear_demosaic(degraded)
    out = restore(degraded[0].permute(1, 2, 0).numpy(), task, device="cpu", **kwargs)
    assert out.shape == clean.shape
    ours = psnr(torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1)[None], chw)
    before = psnr(baseline, chw)
    assert ours > before + margin, (ours, before)
