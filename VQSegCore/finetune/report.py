"""The fine-tune report in the new version's folder: report.md, curves.png, overlays.png.

curves.png: training loss terms and held-out Dice of the EMA teacher by iteration, and the Dice of
parent and candidate per held-out case. overlays.png: for up to three held-out cases, the axial
slice through the label's centre with the truth (green), the parent's (red) and the candidate's
(blue) contours, in a lung window.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from VQSegCore.atomic import write_bytes_atomic, write_text_atomic

OVERLAY_CASES = 3


def write_finetune_report(folder: Path, *, curves: list[dict], validation: list[dict], scores: dict, verdict, summary: dict,
                          overlays: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    written = [_curves_png(folder / "curves.png", curves, validation, scores)]
    if overlays:
        written.append(_overlays_png(folder / "overlays.png", overlays[:OVERLAY_CASES]))
    written.append(folder / "report.md")
    write_text_atomic(folder / "report.md", _markdown(summary, scores, verdict, [p.name for p in written if p.suffix == ".png"]))
    return written


def _markdown(summary: dict, scores: dict, verdict, pictures: list[str]) -> str:
    lines = [f"# Fine-tune {summary.get('version', '')} of {summary.get('model', '')}", "",
             f"**Verdict: {'promoted' if verdict.promote else 'kept as candidate'}** — {verdict.reason}", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in summary.items()]
    cases = sorted({case for per_model in scores.values() for case in per_model})
    if cases:
        lines += ["", "| held-out case | parent Dice | candidate Dice |", "|---|---|---|"]
        for case in cases:
            parent = scores.get("parent", {}).get(case)
            lines.append(f"| {case} | {'' if parent is None else f'{parent:.3f}'} | {scores.get('candidate', {}).get(case, float('nan')):.3f} |")
    lines += [""] + [f"![{name}]({name})" for name in pictures]
    return "\n".join(lines) + "\n"


def _curves_png(path: Path, curves: list[dict], validation: list[dict], scores: dict) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 3.8), dpi=100)
    loss, dice, cases = figure.subplots(1, 3)
    iterations = [c["iteration"] for c in curves]
    for term in ("loss", "sup", "unsup", "rec", "vq"):
        values = [c.get(term) for c in curves]
        if any(v is not None for v in values):
            loss.plot(iterations, _smooth([np.nan if v is None else v for v in values]), label=term, linewidth=1)
    with_unlabelled = [c["iteration"] for c in curves if c.get("unsup") is not None]
    if with_unlabelled and with_unlabelled[0] != iterations[0]:  # after the supervised warm-up
        loss.axvline(with_unlabelled[0], color="grey", linestyle="--", linewidth=1, label="unlabelled from here")
    loss.set(title="training loss (smoothed)", xlabel="iteration", yscale="log")
    if loss.get_legend_handles_labels()[0]:  # a resumed run that only writes its report has no curves
        loss.legend(fontsize=8)
    if validation:
        dice.plot([v["iteration"] for v in validation], [v["mean_dice"] for v in validation], marker="o")
    dice.set(title="held-out Dice of the EMA teacher (model grid)", xlabel="iteration", ylim=(0, 1))
    names = sorted({case for per_model in scores.values() for case in per_model})
    x = np.arange(len(names))
    for offset, key, colour in ((-0.2, "parent", "tab:red"), (0.2, "candidate", "tab:blue")):
        if key in scores:
            cases.bar(x + offset, [scores[key].get(n, np.nan) for n in names], width=0.4, label=key, color=colour)
    cases.set(title="held-out cases", ylabel="Dice", ylim=(0, 1), xticks=x)
    cases.set_xticklabels(names, rotation=30, fontsize=7)
    if names:
        cases.legend(fontsize=8)
    figure.tight_layout()
    return _save(figure, path)


def _overlays_png(path: Path, overlays: list[dict]) -> Path:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2 * len(overlays), 4.4), dpi=100)
    axes = np.atleast_1d(figure.subplots(1, len(overlays)))
    for ax, item in zip(axes, overlays):
        label = item["label"] > 0
        k = int(np.round(np.nonzero(label)[0].mean())) if label.any() else label.shape[0] // 2
        ax.imshow(np.clip(item["image"][k], -1000, 400), cmap="gray", vmin=-1000, vmax=400)
        for key, colour in (("label", "lime"), ("parent", "red"), ("candidate", "deepskyblue")):
            mask = item.get(key)
            if mask is not None and (mask[k] > 0).any():
                ax.contour(mask[k] > 0, levels=[0.5], colors=colour, linewidths=1)
        ax.set_title(f"{item['case']} (slice {k})", fontsize=9)
        ax.axis("off")
    figure.suptitle("truth (green), parent (red), candidate (blue)", fontsize=9)
    return _save(figure, path)


def _smooth(values: list[float], window: int = 20) -> np.ndarray:
    """Trailing mean over up to `window` points (no zero padding, so the ends do not dip)."""
    array = np.asarray(values, dtype=float)
    sums = np.cumsum(np.r_[0.0, np.nan_to_num(array)])
    counts = np.cumsum(np.r_[0, ~np.isnan(array)])
    ends = np.arange(1, array.size + 1)
    starts = np.maximum(0, ends - window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums[ends] - sums[starts]) / (counts[ends] - counts[starts])


def _save(figure, path: Path) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())
    return path


def overlay_item(case_id: str, image_path, label: np.ndarray, predictions: dict) -> dict:
    from VQSegCore.io import read_volume

    image = sitk.GetArrayFromImage(read_volume(image_path).image)
    return {"case": case_id, "image": image, "label": label, **predictions}
