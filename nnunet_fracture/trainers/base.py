"""``nnUNetTrainerFracture``: nnU-Net's trainer plus what every plugin trainer shares.

- Settings are class attributes named in a ``settings`` tuple (see ``nnunet_fracture.training.settings``);
  they are applied once, after nnU-Net's ``__init__`` has set its own instance attributes, and
  ``NNUNET_FRACTURE_SETTINGS="num_epochs=2 num_iterations_per_epoch=3"`` overrides any of them at run time.
- One log line at start-up names the plugin version, the trainer and every setting in effect.
- ``final_validation=False`` skips the sliding-window validation ``nnUNetv2_train`` runs after training (on a CPU it
  can cost more than a short training); ``nnUNetv2_train ... --val`` runs it later.
- ``get_extra_state()`` / ``set_extra_state()`` travel inside nnU-Net's checkpoints; the base keeps a run history
  (one entry per launch), so a run continued with ``--c`` shows that it was resumed and with which settings.

Plugin trainers subclass it and combine by multiple inheritance; every override calls ``super()``.
"""
from __future__ import annotations

from datetime import datetime

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

import nnunet_fracture
from nnunet_fracture.training.checkpoint import attach_extra_state
from nnunet_fracture.training.settings import format_settings, resolve_settings


class nnUNetTrainerFracture(nnUNetTrainer):
    """Stock nnU-Net training with declared, environment-overridable settings and a checkpointed run history.

    Subclasses declare their own settings the same way and extend the checkpointed state cooperatively::

        class nnUNetTrainerWeakBBox(nnUNetTrainerFracture):
            settings = ("lambda_outside",)
            lambda_outside = 1.0

            def get_extra_state(self) -> dict:
                return {**super().get_extra_state(), "bags_seen": self.bags_seen}

            def set_extra_state(self, state: dict) -> None:
                super().set_extra_state(state)
                self.bags_seen = state.get("bags_seen", 0)
    """

    # nnU-Net's own hyperparameters, with nnU-Net 2.8.1's defaults
    settings = ("num_epochs", "num_iterations_per_epoch", "num_val_iterations_per_epoch", "initial_lr",
                "weight_decay", "oversample_foreground_percent", "probabilistic_oversampling",
                "enable_deep_supervision", "save_every", "final_validation")
    num_epochs = 1000
    num_iterations_per_epoch = 250
    num_val_iterations_per_epoch = 50
    initial_lr = 1e-2
    weight_decay = 3e-5
    oversample_foreground_percent = 0.33
    probabilistic_oversampling = False
    enable_deep_supervision = True
    save_every = 50
    final_validation = True  # False: skip the validation nnUNetv2_train runs after training (``--val`` runs it later)
    setting_ranges = {"num_epochs": (1, None), "num_iterations_per_epoch": (1, None),
                      "num_val_iterations_per_epoch": (1, None), "initial_lr": (1e-12, None),
                      "weight_decay": (0.0, None), "oversample_foreground_percent": (0.0, 1.0), "save_every": (1, None)}

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device('cuda')):
        # resolve first: a typo in NNUNET_FRACTURE_SETTINGS fails before nnU-Net creates any output folder
        values, from_env = resolve_settings(type(self))
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name, value in values.items():  # replaces the instance attributes nnU-Net's __init__ just set
            setattr(self, name, value)
        self.settings_in_effect = values
        self.run_history: list[dict] = []  # earlier launches, restored from a checkpoint
        self.launch = {"started": datetime.now().isoformat(timespec="seconds"),
                       "plugin_version": nnunet_fracture.__version__, "trainer": type(self).__name__,
                       "settings": values, "from_env": sorted(from_env), "start_epoch": self.current_epoch}
        self.logger.update_config({"nnunet_fracture": {"version": nnunet_fracture.__version__, **values}})
        self.print_to_log_file(f"nnunet_fracture {nnunet_fracture.__version__} {type(self).__name__} settings: "
                               f"{format_settings(values, from_env)}")

    def initialize(self):
        super().initialize()
        attach_extra_state(self.optimizer, self.get_extra_state, self.set_extra_state)

    def on_train_start(self):
        self.launch["start_epoch"] = self.current_epoch  # after load_checkpoint on --c
        super().on_train_start()

    def perform_actual_validation(self, save_probabilities: bool = False):
        if not self.final_validation:
            self.print_to_log_file("nnunet_fracture: final validation skipped (final_validation=False); run it later "
                                   "with nnUNetv2_train ... --val")
            return
        self.run_final_validation(save_probabilities)

    def run_final_validation(self, save_probabilities: bool = False) -> None:
        """The validation ``nnUNetv2_train`` runs after training (nnU-Net's own, unless a trainer replaces it)."""
        super().perform_actual_validation(save_probabilities)

    def get_extra_state(self) -> dict:
        """Plugin state written into every checkpoint; subclasses return ``{**super().get_extra_state(), ...}``."""
        return {"run_history": [*self.run_history, self.launch]}

    def set_extra_state(self, state: dict) -> None:
        """Restore what ``get_extra_state`` saved; called while nnU-Net's ``load_checkpoint`` runs."""
        self.run_history = list(state.get("run_history", []))
        if not self.run_history:
            return
        previous = self.run_history[-1]
        old = previous["settings"]
        changed = [f"{k}: {old[k]!r} -> {v!r}" if k in old else f"{k}: (new) {v!r}"
                   for k, v in self.settings_in_effect.items() if k not in old or old[k] != v]
        self.print_to_log_file(
            f"nnunet_fracture: checkpoint restored after {len(self.run_history)} earlier launch(es), the last "
            f"started {previous['started']} with {previous['trainer']} {previous['plugin_version']}; "
            + (f"settings changed since: {'; '.join(changed)}" if changed else "settings unchanged"))
