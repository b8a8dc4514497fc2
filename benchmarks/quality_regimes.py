"""The quality bench's regimes: the data, plans and schedule one table shares (``benchmarks/quality.py --regime``)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Regime:
    """Data, plans and schedule shared by every arm of one table."""

    train_cases: int
    test_cases: int
    spacing: tuple[float, float, float]
    contrast: str
    plans: str  # nnUNetPlansBench: written by the bench from nnU-Net's default plans (below); else used as is
    max_features: int
    max_patch: int
    batch_size: int
    epochs: int
    iterations: int
    foreground: float  # oversample_foreground_percent, drawn per sample (probabilistic_oversampling=True)
    device: str
    tta: bool
    test_seed: int = 1000
    extra: dict = field(default_factory=dict)

    def schedule(self) -> str:
        return (f"num_epochs={self.epochs} num_iterations_per_epoch={self.iterations} "
                f"num_val_iterations_per_epoch={max(2, self.iterations // 10)} "
                f"oversample_foreground_percent={self.foreground} probabilistic_oversampling=true "
                f"final_validation=false")

    def settings_with(self, arm_settings: str) -> str:
        """``NNUNET_FRACTURE_SETTINGS`` of a run: the schedule, then the arm's settings; a key the arm sets (such as
        ``oversample_foreground_percent``) replaces the schedule's. The arm's keys are read by the trainers' own
        parser (:func:`nnunet_fracture.training.settings.parse_pairs`)."""
        from nnunet_fracture.training.settings import parse_pairs

        own = parse_pairs(arm_settings)
        kept = [token for token in self.schedule().split() if token.split("=", 1)[0] not in own]
        return " ".join([*kept, arm_settings.strip()]).strip()


REGIMES: dict[str, Regime] = {
    # a 2-core CPU: each arm x seed about 20 minutes. Patch 64^3 gave 0.77 s per iteration, so only 1,000 iterations
    # fit (full_mask: whole-volume Dice 0.26, precision 0.89, recall 0.15 - undertrained); patch 48^3 costs 0.33 s,
    # so three times as many iterations fit (README)
    "cpu": Regime(train_cases=25, test_cases=10, spacing=(1.5, 1.5, 1.5), contrast="standard",
                  plans="nnUNetPlansBench", max_features=32, max_patch=48, batch_size=2, epochs=120, iterations=25,
                  foreground=0.5, device="cpu", tta=False),
    # a check that the harness runs end to end (minutes; its numbers mean nothing)
    "smoke": Regime(train_cases=5, test_cases=5, spacing=(3.0, 3.0, 3.0), contrast="standard",
                    plans="nnUNetPlansBench", max_features=8, max_patch=16, batch_size=2, epochs=1, iterations=2,
                    foreground=0.5, device="cpu", tta=False),
    # a GPU (--gpu): nnU-Net's default plans and a longer schedule
    "gpu": Regime(train_cases=40, test_cases=10, spacing=(1.5, 1.5, 1.5), contrast="standard",
                  plans="nnUNetPlans", max_features=0, max_patch=0, batch_size=0, epochs=100, iterations=250,
                  foreground=0.5, device="cuda", tta=True),
}
