"""Figures of a training run: the LSTM's loss curves and the compliance classifier's history."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from models.forecasting.lstm_fit import FitResult


def lstm_loss_figure(fit: FitResult) -> Any:
    """Training and validation loss per epoch, with the weekly baseline and the best epoch."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    epochs = range(1, len(fit.train_loss) + 1)
    ax.plot(epochs, fit.train_loss, marker="o", label="train")
    ax.plot(epochs, fit.val_loss, marker="o", label=f"validation ({fit.validation})")
    baseline_label = "validation, weekly baseline alone"
    ax.axhline(fit.baseline_val_loss, color="tab:orange", linestyle=":", label=baseline_label)
    ax.axvline(fit.best_epoch, color="grey", linestyle="--", label=f"best epoch {fit.best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("MSE of scaled daily cycles")
    ax.set_title("LSTM loss per epoch")
    ax.legend(fontsize="small")
    fig.tight_layout()
    plt.close(fig)
    return fig


def compliance_training_figure(history: pd.DataFrame) -> Any:
    """Accuracy and loss per epoch, training and validation, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=110)
    epochs = history["epoch"]
    acc.plot(epochs, history["train_accuracy"], marker="o", label="training")
    acc.plot(epochs, history["val_accuracy"], marker="o", label="validation")
    acc.set_title("Accuracy")
    loss.plot(epochs, history["train_loss"], marker="o", label="training")
    loss.plot(epochs, history["val_loss"], marker="o", label="validation")
    loss.set_yscale("log")  # losses fall by orders of magnitude
    loss.set_title("Loss (binary cross-entropy)")
    for ax in (acc, loss):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle("Component-compliance classifier")
    fig.tight_layout()
    plt.close(fig)
    return fig


def reliability_figure(reliability: pd.DataFrame, title: str = "Failure risk calibration") -> Any:
    """Observed failure share against mean predicted risk per risk bin (the diagonal is
    perfect calibration), with how many readings fell in each bin below."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    from matplotlib import pyplot as plt

    used = reliability[reliability["rows"] > 0]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5.5, 6), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
    top.plot(used["mean_risk"], used["observed"], marker="o", label="this model")
    top.set_ylabel("share that reached its rating within the horizon")
    top.set_title(title)
    top.legend(fontsize="small")
    top.grid(alpha=0.3)
    centres = (reliability["low"] + reliability["high"]) / 2
    bottom.bar(centres, reliability["rows"], width=reliability["high"] - reliability["low"])
    bottom.set_yscale("log")
    bottom.set_xlabel("predicted failure risk")
    bottom.set_ylabel("readings")
    fig.tight_layout()
    plt.close(fig)
    return fig
