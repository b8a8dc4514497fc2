"""The VAE trainer's validation: online, the loss on normal-tissue patches logged as nnU-Net's pseudo Dice
``1 / (1 + reconstruction)``; finally, per validation case, the sliding-window error map (gaussian blending, as
``vae-error`` computes it) compared inside and outside the boxes / fracture labels, written to
``fold_X/validation/vae_summary.json``. The functions take the trainer
(:class:`~nnunet_fracture.trainers.normal_vae.nnUNetTrainerNormalVAE`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nnunetv2.utilities.helpers import dummy_context

from nnunet_fracture.networks.unwrap import unwrap_network
from nnunet_fracture.networks.vae_error_map import error_predictor, inside_outside_summary
from nnunet_fracture.training.distributed import gather_concatenated


def online_validation_step(trainer, batch: dict) -> dict:
    """The VAE trainer's ``validation_step``: the loss of the mean reconstruction (no sampling) of a batch of
    normal patches, and its reconstruction part."""
    data = batch["data"].to(trainer.device, non_blocking=True)
    with torch.no_grad(), (torch.autocast(trainer.device.type, enabled=True) if trainer.device.type == "cuda"
                           else dummy_context()):
        loss = trainer.loss(unwrap_network(trainer.network).vae_outputs(data, sample=False), None, data=data)
    return {"loss": loss.detach().cpu().numpy(), "reconstruction": trainer.loss.last_components["reconstruction"]}


def finish_online_validation(trainer, val_outputs: list[dict]) -> float:
    """Pool the epoch's losses and reconstruction errors (over DDP ranks too), log them; the pseudo Dice."""
    values = np.array([[o["loss"], o["reconstruction"]] for o in val_outputs], dtype=np.float64)
    values, = gather_concatenated(values, enabled=trainer.is_ddp)
    loss, reconstruction = values.mean(axis=0)
    score = 1.0 / (1.0 + reconstruction)
    trainer.logger.log("mean_fg_dice", score, trainer.current_epoch)
    trainer.logger.log("dice_per_class_or_region", [score], trainer.current_epoch)
    trainer.logger.log("val_losses", float(loss), trainer.current_epoch)
    trainer.print_to_log_file(f"VAE validation on normal patches: reconstruction {reconstruction:.4f}, loss "
                              f"{loss:.4f}; 'Pseudo dice' = 1 / (1 + reconstruction) = {score:.4f}")
    return score


def write_error_summary(trainer) -> dict:
    """Error maps of the validation cases, inside vs outside their labels; the summary written to
    ``validation/vae_summary.json`` (rank 0 only)."""
    trainer.network.eval()
    predictor = error_predictor(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                trainer.dataset_json, type(trainer).__name__, trainer.device)
    _, val_keys = trainer.do_split()
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, val_keys)
    cases = {}
    for key in dataset.identifiers:
        data, seg, _, _ = dataset.load_case(key)
        error = predictor.predict_sliding_window_return_logits(torch.from_numpy(np.asarray(data[:])))[0].cpu()
        cases[key] = (error.float().numpy(), np.asarray(seg[0]) > 0)
    summary = inside_outside_summary(cases)
    summary["note"] = ("mean VAE reconstruction error |x - x_hat| (nnU-Net-normalised CT units) per validation "
                       "case, inside and outside the boxes / fracture labels, on the preprocessed grid; a useful "
                       "prior has ratio_inside_outside > 1")
    out = Path(trainer.output_folder) / "validation"
    out.mkdir(parents=True, exist_ok=True)
    (out / "vae_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    pooled = summary["pooled"]
    trainer.print_to_log_file(
        f"VAE final validation on {len(cases)} case(s): mean error inside boxes {pooled['mean_inside']}, outside "
        f"{pooled['mean_outside']}, ratio {pooled['ratio_inside_outside']} (written to {out / 'vae_summary.json'})")
    return summary


class VAEValidation:
    """Trainer mixin of the VAE trainer: the loss on normal patches online (:func:`online_validation_step`,
    :func:`finish_online_validation`), and at the end, instead of nnU-Net's segmentation validation, the error map
    inside vs outside the boxes (:func:`write_error_summary`, rank 0 only)."""

    def validation_step(self, batch: dict) -> dict:
        return online_validation_step(self, batch)

    def on_validation_epoch_end(self, val_outputs: list[dict]):
        finish_online_validation(self, val_outputs)

    def run_final_validation(self, save_probabilities: bool = False) -> None:
        if self.local_rank == 0:
            write_error_summary(self)
