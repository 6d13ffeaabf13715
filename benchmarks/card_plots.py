"""Model-card pictures drawn from the weights files: each model's learning curve and what its attention is worth.

    python benchmarks/card_plots.py                                   # every weights/*.safetensors -> weights/plots/
    python benchmarks/card_plots.py weights/panet_sr_x4.safetensors --out /tmp/plots
    python benchmarks/attention_worth.py --weights W --limit 4 > worth.md    # then plot that run's table:
    python benchmarks/card_plots.py W --worth worth.md

Learning curve: ``training.curve`` of the file's metadata (step, CPU hours of the training process, validation
PSNR, one row per validation), with the baselines' validation PSNR as horizontal lines. Attention's worth:
PSNR against s/MP of the variants `benchmarks/attention_worth.py` measures (bypassed, each window).

Numbers the weights file does not hold come from ``--figures`` JSON files (later files win), keyed by model
name: ``val_baselines`` ({label: dB, or {"psnr": dB, "steps": [first, last], ...}}: what
``benchmarks/val_baselines.py`` measures on the curve's own crops; the other keys say which run), ``attention_worth``
({"set", "source", "step", "rows": [{"variant", "psnr", "s_per_mp"}]}) and ``curve_marks`` ([{"step", "label"}]);
an ``attention_worth`` whose "step" is not the file's step was measured on other weights, so it is not drawn
(a retrained model keeps no picture of its predecessor's attention);
``--worth`` reads ``attention_worth.py``'s printed output (its first line names the model) and wins over them.
The same keys in the file's metadata (top level or under ``training``)
win over any figures file, so a model that stores them needs no side file. Nothing is drawn by hand: every
point is a number from a file. Needs matplotlib (``pip install torch==2.13.0 -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIGURE_KEYS = ("val_baselines", "attention_worth", "curve_marks")
BASELINE_COLOURS = ("tab:red", "tab:green", "tab:purple", "tab:brown")
# A first validation far below the rest (a model adapted from another task) is noted, not plotted.
OFF_SCALE_DB = 3.0


def model_names(path: Path, meta: dict[str, Any]) -> list[str]:
    """Names a figures file may use for this model: its stored name, the file stem, the registry's spelling."""
    names = [str(meta["name"])] if meta.get("name") else []
    return names + [path.stem, path.stem.replace("_", "-")]


def load_figures(paths: list[Path]) -> dict[str, dict[str, Any]]:
    """Figures files merged by model name and key, later files winning."""
    merged: dict[str, dict[str, Any]] = {}
    for path in paths:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"error: {path}: cannot read figures ({e})") from None
        for name, figures in data.items():
            if not name.startswith("_"):  # "_about" and the like are comments
                merged.setdefault(name, {}).update(figures)
    return merged


def read_worth(path: Path) -> tuple[str, dict[str, Any]]:
    """(model name, attention_worth figures) from what ``benchmarks/attention_worth.py`` printed.

    Its first line is "NAME: SET (N images), PROTOCOL", then a "| variant | PSNR (dB) | SSIM | s/MP |" table.
    """
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines or ": " not in lines[0]:
        raise SystemExit(f"error: {path}: not the output of benchmarks/attention_worth.py")
    name, _, rest = lines[0].partition(": ")
    rows = []
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[0] not in ("variant", "---"):
            try:
                rows.append({"variant": cells[0], "psnr": float(cells[1]), "ssim": float(cells[2]),
                             "s_per_mp": float(cells[3])})
            except ValueError:
                continue
    if not rows:
        raise SystemExit(f"error: {path}: no table of variants in it")
    return name, {"set": rest.split("),")[0] + ")" if ")," in rest else rest, "source": str(path), "rows": rows}


def figures_for(path: Path, meta: dict[str, Any], figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each figure key from the file's metadata if it is there, else from the figures files."""
    found: dict[str, Any] = {}
    for name in reversed(model_names(path, meta)):
        found.update(figures.get(name, {}))
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    for key in FIGURE_KEYS:
        stored = meta.get(key, training.get(key))
        if stored:
            found[key] = stored
    return found


def _validation(meta: dict[str, Any]) -> str:
    """The validation protocol in words, from the recipe stored with the weights (the task table's wording)."""
    from panet_cli.tasks import TASK_NAMES, task_spec

    recipe = meta.get("recipe") or {}
    task = meta.get("task") or recipe.get("task")
    if task not in TASK_NAMES:
        return str(task or "")
    fields = {"pattern": "RGGB", **recipe}
    if "scale" in meta:
        fields["scale"] = meta["scale"]
    try:
        return task_spec(task).validation.format(**fields)
    except (KeyError, ValueError):  # an older recipe without the field: the task's name says enough
        return str(task)


def _save(fig, path: Path) -> None:
    """Write the figure atomically (a half-written PNG never replaces a good one)."""
    import matplotlib.pyplot as plt

    from panet_cli.files import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def plot_curve(name: str, meta: dict[str, Any], figures: dict[str, Any], out: Path) -> bool:
    """Validation PSNR against CPU hours, baselines as lines, the shipped step starred. False: no curve stored."""
    import matplotlib.pyplot as plt

    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    curve = [tuple(point) for point in training.get("curve", [])]
    if not curve:
        return False
    steps, hours, psnrs = zip(*curve)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    shown = list(range(len(curve)))
    note = ""
    if len(curve) > 2 and psnrs[0] < min(psnrs[1:]) - OFF_SCALE_DB:
        shown = shown[1:]
        note = f"step {steps[0]}: {psnrs[0]:.2f} dB (below the scale)"
    ax.plot([hours[i] for i in shown], [psnrs[i] for i in shown], "o-", ms=3, lw=1.2, color="tab:blue",
            label="validation PSNR")
    low, high = min(psnrs[i] for i in shown), max(psnrs[i] for i in shown)
    for k, (method, value) in enumerate((figures.get("val_baselines") or {}).items()):
        spec = value if isinstance(value, dict) else {"psnr": value}
        first, last = spec.get("steps", [steps[0], steps[-1]])
        xs = [h for s, h in zip(steps, hours) if first <= s <= last] or [hours[0], hours[-1]]
        ax.hlines(spec["psnr"], min(xs), max(xs), colors=BASELINE_COLOURS[k % len(BASELINE_COLOURS)],
                  linestyles="--", lw=1.2, label=f"{method}: {spec['psnr']:.2f} dB")
        low, high = min(low, spec["psnr"]), max(high, spec["psnr"])
    for mark in figures.get("curve_marks") or []:
        at = [h for s, h in zip(steps, hours) if s == mark["step"]]
        if at:
            ax.axvline(at[0], color="0.6", lw=0.8, ls=":")
            ax.text(at[0], 1.0, f" {mark['label']}", rotation=90, va="top", ha="right", fontsize=7, color="0.35",
                    transform=ax.get_xaxis_transform())
    shipped = meta.get("step")
    for s, h, v in curve:
        if s == shipped:
            ax.plot([h], [v], "*", ms=12, color="tab:orange", label=f"ships: step {s}, {v:.2f} dB", zorder=5)
            break
    pad = max(0.05, 0.08 * (high - low))
    headroom = 0.3 * (high - low) if figures.get("curve_marks") else 0  # for the marks' labels
    ax.set_ylim(low - pad, high + pad + headroom)
    ax.set_xlabel("CPU hours of the training process")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(f"{name}: learning curve ({_validation(meta)})", fontsize=11)
    source = training.get("initialised_from")
    notes = [note] if note else []
    if isinstance(source, dict):
        notes.append(f"initialised from {source.get('from')} (its {source.get('cpu_hours', 0):.2f} CPU h not counted)")
    if notes:
        ax.text(0.01, 0.01, "\n".join(notes), transform=ax.transAxes, fontsize=7, color="0.35", va="bottom")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    _save(fig, out)
    return True


def stale_worth(meta: dict[str, Any], figures: dict[str, Any]) -> str | None:
    """Why the attention figures do not describe this file (measured on another step), or None."""
    measured = (figures.get("attention_worth") or {}).get("step")
    if measured is None or measured == meta.get("step"):
        return None
    return f"attention figures are for step {measured}, the file is step {meta.get('step')}: re-measure"


def plot_worth(name: str, figures: dict[str, Any], out: Path) -> bool:
    """PSNR against s/MP of the attention variants; False when no variant has both numbers."""
    import matplotlib.pyplot as plt

    worth = figures.get("attention_worth") or {}
    rows = [r for r in worth.get("rows", []) if r.get("psnr") is not None and r.get("s_per_mp") is not None]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bypassed = [r for r in rows if "bypass" in r["variant"]]
    colours = iter(("tab:blue", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive"))
    for row in rows:
        off = "bypass" in row["variant"]
        stored = "stored default" in row["variant"]
        ax.plot([row["s_per_mp"]], [row["psnr"]], "s" if off else ("*" if stored else "o"), ms=13 if stored else 8,
                color="tab:gray" if off else ("tab:orange" if stored else next(colours, "tab:blue")), ls="none",
                label=f"{row['variant']}: {row['psnr']:.3f} dB, {row['s_per_mp']:.1f} s/MP")
    if bypassed:
        ax.axhline(bypassed[0]["psnr"], color="tab:gray", lw=0.8, ls="--")
    psnrs = [r["psnr"] for r in rows]
    spread = max(psnrs) - min(psnrs)
    pad = max(0.005, 0.25 * spread)
    ax.set_ylim(min(psnrs) - pad, max(psnrs) + pad + 0.18 * len(rows) * max(spread, 0.01))  # room for the legend
    ax.set_xlim(0, max(r["s_per_mp"] for r in rows) * 1.1)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_xlabel("seconds per megapixel (lower is faster)")
    ax.set_ylabel("PSNR (dB)")
    parts = [str(worth["set"])] if worth.get("set") else []
    parts += [f"step {worth['step']}"] if "step" in worth else []
    about = ", ".join(parts)
    ax.set_title(f"{name}: what the attention is worth" + (f" ({about})" if about else ""), fontsize=11)
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, out)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", nargs="*", type=Path, help="weights files (default: weights/*.safetensors)")
    parser.add_argument("--figures", nargs="*", type=Path, default=[ROOT / "benchmarks" / "card_figures.json"],
                        help="JSON files of figures not stored in the weights (default: benchmarks/card_figures.json)")
    parser.add_argument("--worth", nargs="*", type=Path, default=[],
                        help="files holding benchmarks/attention_worth.py's output (win over --figures)")
    parser.add_argument("--out", type=Path, default=ROOT / "weights" / "plots")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        print("error: card_plots.py needs matplotlib: pip install torch==2.13.0 -e \".[bench]\"", file=sys.stderr)
        return 1
    from panet_cli.loading.checkpoint import read_safetensors

    files = args.weights or sorted((ROOT / "weights").glob("*.safetensors"))
    if not files:
        print("error: no weights files given or found in weights/", file=sys.stderr)
        return 1
    figures = load_figures(args.figures)
    for path in args.worth:
        name, worth = read_worth(path)
        figures.setdefault(name, {})["attention_worth"] = worth
    for path in files:
        _, meta = read_safetensors(path)
        name = model_names(path, meta)[-1]
        found = figures_for(path, meta, figures)
        stem = path.stem.replace("_", "-")
        stale = stale_worth(meta, found)
        if stale:
            print(f"{path.name}: {stale} (attention plot skipped)")
            found.pop("attention_worth")
        for kind, plot in (("curve", lambda out: plot_curve(name, meta, found, out)),
                           ("attention", lambda out: plot_worth(name, found, out))):
            out = args.out / f"{stem}_{kind}.png"
            print(f"{out}" if plot(out) else f"{path.name}: no {kind} figures (skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
