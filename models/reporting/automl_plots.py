"""Figures of an AutoML sweep: the leaderboard, and predicted-vs-true and residuals of the best."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt

    return plt


def leaderboard_figure(board: pd.DataFrame, threshold: float | None) -> Any:
    """Horizontal bars of mean CV NRMSE per ranked candidate, best on top; baselines grey."""
    plt = _pyplot()
    ranked = board[board["rank"].notna()].iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(3, len(ranked)) + 1.2), dpi=110)
    colors = [
        "tab:green" if rank == 1 else "lightgrey" if baseline else "tab:blue"
        for rank, baseline in zip(ranked["rank"], ranked["baseline"], strict=True)
    ]
    ax.barh(ranked["candidate"], ranked["cv_nrmse"], color=colors)
    for y, value in enumerate(ranked["cv_nrmse"]):
        ax.text(value, y, f" {value:.4f}", va="center", fontsize="small")
    if threshold:
        ax.axvline(threshold, color="tab:red", linestyle="--", label=f"threshold {threshold:g}")
        ax.legend(fontsize="small", loc="lower right")
    ax.set_xlabel("normalized RMSE, mean over CV folds (lower is better)")
    ax.set_title("AutoML leaderboard (grey: baselines)")
    ax.set_xlim(0, max(float(ranked["cv_nrmse"].max()) * 1.2, threshold or 0.0) or 1.0)
    fig.tight_layout()
    plt.close(fig)
    return fig


def predicted_vs_true_figure(actual: np.ndarray, predicted: np.ndarray, name: str) -> Any:
    """Scatter (hexbin when many points) of forecast against actual daily cycles."""
    plt = _pyplot()
    known = np.isfinite(actual)
    a, p = actual[known], predicted[known]
    fig, ax = plt.subplots(figsize=(5, 5), dpi=110)
    if len(a) > 5000:
        ax.hexbin(a, p, gridsize=60, mincnt=1, bins="log", cmap="viridis")
    else:
        ax.scatter(a, p, s=4, alpha=0.4)
    top = float(max(a.max(), p.max())) if len(a) else 1.0
    ax.plot([0, top], [0, top], color="tab:red", linewidth=1, label="perfect forecast")
    ax.set_xlabel("actual daily cycles")
    ax.set_ylabel("forecast daily cycles")
    ax.set_title(f"{name}: forecast vs actual (last CV fold)")
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    plt.close(fig)
    return fig


def residuals_figure(actual: np.ndarray, predicted: np.ndarray, name: str) -> Any:
    """Residual (actual - forecast) by day ahead (median and 10-90% band) and its histogram."""
    plt = _pyplot()
    residual = actual - predicted
    days = np.arange(1, residual.shape[1] + 1)
    with np.errstate(all="ignore"):
        low, mid, high = np.nanpercentile(residual, [10, 50, 90], axis=0)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    left.fill_between(days, low, high, alpha=0.3, label="10-90% of residuals")
    left.plot(days, mid, marker="o", markersize=3, label="median")
    left.axhline(0, color="grey", linewidth=1)
    left.set_xlabel("day ahead")
    left.set_ylabel("actual - forecast (cycles)")
    left.set_title("residuals by day ahead")
    left.legend(fontsize="small")
    known = residual[np.isfinite(residual)]
    right.hist(known, bins=60, color="tab:blue", alpha=0.8)
    right.axvline(0, color="grey", linewidth=1)
    right.set_xlabel("actual - forecast (cycles)")
    right.set_title("distribution")
    fig.suptitle(f"{name}: residuals on the last CV fold")
    fig.tight_layout()
    plt.close(fig)
    return fig
