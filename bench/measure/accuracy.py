"""Pure accuracy figures: parity of a backend's logits against the fp32 reference, per-class
metrics, the confusion table and the misclassified images. No clocks, no models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

PARITY_FLAG_PTS = 0.2  # an accuracy drop larger than this (points) against the reference is flagged


def parity(reference_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """How far a backend's logits are from the fp32 reference's, on the same weights and data."""
    ref, out, labels = reference_logits.float().cpu(), logits.float().cpu(), labels.cpu()
    ref_acc = (ref.argmax(1) == labels).float().mean().item()
    acc = (out.argmax(1) == labels).float().mean().item()
    delta_pts = (acc - ref_acc) * 100
    return {
        "parity_max_abs_logit_diff": (ref - out).abs().max().item(),
        "parity_argmax_agreement": (ref.argmax(1) == out.argmax(1)).float().mean().item(),
        "parity_accuracy_delta_pts": delta_pts,
        "parity_flag": bool(delta_pts < -PARITY_FLAG_PTS),
    }


def classification_metrics(true: np.ndarray, pred: np.ndarray, n_classes: int = 10):
    """Confusion matrix (rows: true, cols: predicted) and per-class precision/recall/F1."""
    cm = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, tp / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, tp / cm.sum(1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return cm, precision, recall, f1, cm.sum(1)


def classification_tables(labels: torch.Tensor, preds: torch.Tensor, n_classes: int = 10) -> dict[str, pd.DataFrame]:
    """The ``classes`` (precision, recall, F1, support) and ``confusion`` result tables."""
    cm, precision, recall, f1, support = classification_metrics(labels.cpu().numpy(), preds.cpu().numpy(), n_classes)
    return {
        "classes": pd.DataFrame({"class": range(n_classes), "precision": precision, "recall": recall, "f1": f1,
                                 "support": support}),
        "confusion": pd.DataFrame([{"true": t, "pred": p, "count": int(cm[t, p])}
                                   for t in range(n_classes) for p in range(n_classes)]),
    }


def misclassified(images: torch.Tensor, labels: torch.Tensor, preds: torch.Tensor, limit: int = 16) -> pd.DataFrame:
    """The first ``limit`` misclassified images (uint8 pixels) with true and predicted labels."""
    wrong = torch.nonzero(preds.cpu() != labels.cpu()).flatten()[:limit]
    return pd.DataFrame({
        "index": wrong.numpy(),
        "label": labels.cpu()[wrong].numpy(),
        "pred": preds.cpu()[wrong].numpy(),
        "pixels": [images[i].numpy().astype(np.uint8).tobytes() for i in wrong.tolist()],
    })
