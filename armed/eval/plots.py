"""PNG plots a person would rather look at than read: confusion matrix, per-class bars, per-category lines."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CJK_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
)


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import font_manager
    from matplotlib import pyplot as plt

    for path in CJK_FONTS:  # category names are Chinese
        if Path(path).exists():
            font_manager.fontManager.addfont(path)
            name = font_manager.FontProperties(fname=path).get_name()
            plt.rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
            break
    plt.rcParams["axes.unicode_minus"] = False
    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _line_chart_finish(ax: Any, title: str) -> None:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)


def confusion_png(matrix: Sequence[Sequence[int]], rows: Sequence[str], cols: Sequence[str], path: Path, title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 4.6))
    totals = [max(sum(r), 1) for r in matrix]
    shares = [[v / t for v in r] for r, t in zip(matrix, totals, strict=True)]
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v}\n{100 * shares[i][j]:.0f}%", ha="center", va="center",
                    color="white" if shares[i][j] > 0.55 else "black", fontsize=9)
    ax.set_xticks(range(len(cols)), [c.replace("_relevant", "") for c in cols])
    ax.set_yticks(range(len(rows)), [r.replace("_relevant", "") for r in rows])
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of gold row")
    _save(plt, fig, path)


def per_class_png(systems: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> None:
    """Grouped bars: precision / recall / F1 of each class, one colour per system."""
    plt = _plt()
    classes = ("highly", "less", "irrelevant")
    kinds = ("precision", "recall", "f1")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8), sharey=True)
    width = 0.8 / max(len(systems), 1)
    for ax, kind in zip(axes, kinds, strict=True):
        for k, (name, m) in enumerate(systems.items()):
            vals = [float(m.get(f"{c}_{kind}", 0.0)) for c in classes]
            xs = [i + (k - (len(systems) - 1) / 2) * width for i in range(len(classes))]
            bars = ax.bar(xs, vals, width, label=name)
            for x, v in zip(xs, vals, strict=True):
                ax.text(x, v + 0.01, f"{100 * v:.0f}", ha="center", fontsize=7)
            _ = bars
        ax.set_xticks(range(len(classes)), classes)
        ax.set_title(kind)
        ax.set_ylim(0, 1.08)
    axes[0].set_ylabel("score")
    axes[-1].legend(fontsize=8, loc="upper right")
    fig.suptitle(title, fontsize=10)
    _save(plt, fig, path)


def per_category_png(
    systems: Mapping[str, Mapping[str, Mapping[str, Any]]], path: Path, title: str, top: int = 12
) -> None:
    """Accuracy (ALL) per category, one line per system; categories ordered by size (largest first)."""
    plt = _plt()
    first = next(iter(systems.values()), {})
    cats = list(first)[:top]
    fig, ax = plt.subplots(figsize=(max(6, 0.75 * len(cats) + 2), 4))
    for name, per in systems.items():
        ax.plot(range(len(cats)), [float(per.get(c, {}).get("accuracy_all", float("nan"))) for c in cats],
                marker="o", label=name)
    ax.set_xticks(range(len(cats)), [f"{c}\n(n={first[c]['n']})" for c in cats], rotation=35, ha="right",
                  fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy (ALL)")
    _line_chart_finish(ax, title)
    _save(plt, fig, path)


def ladder_png(rows: Sequence[tuple[str, Mapping[str, Any]]], path: Path, title: str) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = [n for n, _ in rows]
    for key, label in (("accuracy_all", "acc ALL"), ("macro_f1", "macro-F1"), ("accuracy_hard", "acc HARD")):
        ax.plot(range(len(rows)), [float(m.get(key) or 0.0) for _, m in rows], marker="o", label=label)
    ax.set_xticks(range(len(rows)), names, rotation=20)
    ax.set_ylim(0, 1.02)
    _line_chart_finish(ax, title)
    _save(plt, fig, path)


def cascade_png(curve: Mapping[str, Any], path: Path, title: str) -> None:
    """Escalation rate and accuracy against the cascade threshold (what an SRE reads to pick it)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    pts = curve["points"]
    xs = [p["threshold"] for p in pts]
    series = [("escalation_rate", "escalation rate (share to the LLM)"), ("kept_accuracy", "student accuracy, kept"),
              ("kept_macro_f1", "student macro-F1, kept")]
    if curve.get("teacher"):
        series += [("cascade_accuracy", "cascade accuracy"), ("cascade_macro_f1", "cascade macro-F1")]
    for key, label in series:
        # no pair kept at a threshold: no accuracy to draw (a gap, not a zero)
        ax.plot(xs, [float("nan") if p.get(key) is None else float(p[key]) for p in pts], marker="o", markersize=3,
                label=label)
    ax.set_xlabel("judge.escalate_below (student band confidence)")
    ax.set_ylim(0, 1.02)
    _line_chart_finish(ax, title)
    _save(plt, fig, path)
