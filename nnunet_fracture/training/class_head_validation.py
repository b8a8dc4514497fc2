"""Online validation of a classification-head trainer: each validation patch's head score and class (any
foreground / box voxel, the ignore label excluded), pooled over the epoch (and DDP ranks) into the head's accuracy
at 0.5 and its ROC AUC, logged per epoch as :data:`CLS_LOG_KEYS` (AUC is NaN when all patches share one class)."""
from __future__ import annotations

import math

import numpy as np
import torch

from nnunet_fracture.losses.classification_head import classification_target
from nnunet_fracture.training.distributed import gather_concatenated

#: keys added to nnU-Net's logger, one value per epoch
CLS_LOG_KEYS = ("cls_accuracy", "cls_auc")


def class_scores(logits: torch.Tensor, target: torch.Tensor, ignore_label) -> dict:
    """``cls_scores`` (sigmoid of the head's logits) and ``cls_labels`` of one validation batch, flattened, for
    the batch's output dict; ``target`` is the full-resolution target patch."""
    y = classification_target(target.to(logits.device), logits.shape[2:], ignore_label)
    return {"cls_scores": torch.sigmoid(logits.float()).flatten().cpu().numpy(),
            "cls_labels": y.flatten().cpu().numpy()}


def pop_class_scores(val_outputs: list[dict], is_ddp: bool) -> tuple[np.ndarray, np.ndarray]:
    """Take the scores and labels out of the epoch's outputs (nnU-Net's own pooling must not see them) and gather
    them over DDP ranks."""
    scores = np.concatenate([o.pop("cls_scores") for o in val_outputs])
    labels = np.concatenate([o.pop("cls_labels") for o in val_outputs])
    return gather_concatenated(scores, labels, enabled=is_ddp)


def log_class_numbers(trainer, scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Log the head's accuracy at 0.5 and ROC AUC for the trainer's current epoch; (accuracy, AUC)."""
    from nnunet_fracture.evaluation.detection_metrics import detection_metrics  # scikit-learn: import late

    result = detection_metrics(scores, labels, threshold=0.5)
    accuracy = (result.tp + result.tn) / result.n_items if result.n_items else math.nan
    epoch, logging = trainer.current_epoch, trainer.logger.local_logger.my_fantastic_logging
    for key, value in zip(CLS_LOG_KEYS, (accuracy, result.roc_auc)):
        values = logging.setdefault(key, [])
        values.extend([math.nan] * max(0, epoch - len(values)))  # keys added after a resume
        trainer.logger.log(key, value, epoch)
    trainer.print_to_log_file(f"classification head: accuracy {accuracy:.4f}, AUC {result.roc_auc:.4f} over "
                              f"{labels.size} validation patches ({int(labels.sum())} with fracture)")
    return accuracy, result.roc_auc
