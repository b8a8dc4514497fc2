"""The MC-Dropout rounds of a PolyDice-MCD trainer, run every ``mc_every`` epochs: which training cases a round
assesses, the assessment on rank 0 shared with the other ranks, the difficulty table and per-case ``eps1`` it
updates, its cost against the training time since the previous round, and the files it writes (``difficulty.csv``,
``difficulty.png``, ``epsilon.csv`` in the fold's output folder).

The functions take the trainer (:class:`~nnunet_fracture.trainers.polydice_mcd.nnUNetTrainerPolyDiceMCD`) and
use its settings and its state: ``difficulty`` (a :class:`~nnunet_fracture.training.difficulty.DifficultyTable`),
``epsilon`` (case -> ``eps1``), ``mc_round_seconds``, ``mc_clock`` and ``mc_candidates``. :class:`MCDropoutRounds`
is the trainer mixin that runs them and carries the table and ``eps1`` in the checkpoint.
"""
from __future__ import annotations

import time
from pathlib import Path

from nnunet_fracture.networks.unwrap import unwrap_network
from nnunet_fracture.training import difficulty, mc_assessment
from nnunet_fracture.training.distributed import broadcast_from_rank0


def cases_per_round(trainer) -> int:
    """``mc_cases_per_round``, or (0) as many as ``mc_max_overhead`` allows (an estimate from the schedule)."""
    if trainer.mc_cases_per_round:
        return trainer.mc_cases_per_round
    return mc_assessment.auto_cases_per_round(
        trainer.mc_max_overhead, trainer.mc_every or 1, trainer.num_iterations_per_epoch,
        trainer.configuration_manager.batch_size, trainer.mc_passes, trainer.mc_patches_per_case)


def describe(trainer) -> str:
    """One log line: when rounds run and what they assess."""
    return (f"{type(trainer).__name__}: MC-Dropout round every {trainer.mc_every} epochs, {trainer.mc_passes} passes "
            f"at p={trainer.mc_dropout_p} (training p={trainer.dropout_p_train}), {cases_per_round(trainer)} case(s) "
            f"per round x {trainer.mc_patches_per_case} patch(es), difficulty '{trainer.mc_aggregate}' -> eps1 in "
            f"[{trainer.epsilon_min}, {trainer.epsilon_max}] ({trainer.epsilon_direction})")


def eligible_cases(trainer) -> list[str]:
    """The training cases rounds may assess (with ``mc_foreground_only``, those with a labelled voxel); cached."""
    if trainer.mc_candidates is None:
        keys = sorted(trainer.do_split()[0])
        if trainer.mc_foreground_only:
            dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, list(keys))
            keys = [k for k in keys if mc_assessment.has_foreground(dataset.load_case(k)[3])]
        trainer.mc_candidates = keys
    return trainer.mc_candidates


def assess_round(trainer) -> dict[str, float]:
    """Difficulty of this round's cases (rank 0 only; the network unwrapped from DDP)."""
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, list(eligible_cases(trainer)))
    round_index = (trainer.current_epoch + 1) // trainer.mc_every - 1
    cases = mc_assessment.cases_for_round(dataset.identifiers, round_index, cases_per_round(trainer), trainer.mc_seed)
    return mc_assessment.assess_cases(
        unwrap_network(trainer.network), dataset, cases, trainer.configuration_manager.patch_size, trainer.mc_passes,
        trainer.mc_dropout_p, "sigmoid" if trainer.label_manager.has_regions else "softmax",
        trainer.mc_patches_per_case, trainer.mc_seed, trainer.mc_aggregate, trainer.mc_top_percent,
        trainer.mc_batch_size)


def write_files(trainer) -> None:
    """``difficulty.csv``, ``difficulty.png`` and ``epsilon.csv`` in the fold's output folder."""
    from nnunet_fracture.visualization.difficulty_figure import difficulty_figure

    out = Path(trainer.output_folder)
    trainer.difficulty.write_csv(out / "difficulty.csv")
    difficulty_figure(trainer.difficulty.rows, trainer.difficulty.cases, out / "difficulty.png",
                      title=f"MC-Dropout difficulty per case ({trainer.mc_aggregate})")
    difficulty.write_epsilon_csv(out / "epsilon.csv", trainer.epsilon)


def run_round(trainer) -> dict[str, float]:
    """Assess this round's cases (rank 0), share the result, update the table and ``eps1``, write the files and
    log the round's cost; the difficulty per assessed case."""
    start = time.perf_counter()
    training_seconds = start - trainer.mc_clock
    values = broadcast_from_rank0(assess_round(trainer) if trainer.local_rank == 0 else None, enabled=trainer.is_ddp)
    trainer.difficulty.record(trainer.current_epoch, values)
    trainer.epsilon = difficulty.epsilon_by_rank(trainer.difficulty.latest(), trainer.epsilon_min,
                                                 trainer.epsilon_max, trainer.epsilon_direction)
    if trainer.local_rank == 0:
        write_files(trainer)
    seconds = time.perf_counter() - start
    trainer.mc_round_seconds.append(seconds)
    trainer.mc_clock = time.perf_counter()
    ordered = sorted(values.values())
    trainer.print_to_log_file(
        f"MC-Dropout round after epoch {trainer.current_epoch}: {len(values)} case(s) in {seconds:.1f} s "
        f"({100 * seconds / max(training_seconds, 1e-9):.1f} % of the {training_seconds:.1f} s trained since the "
        f"previous round); difficulty min {ordered[0]:.3g}, median {ordered[len(ordered) // 2]:.3g}, "
        f"max {ordered[-1]:.3g}" if ordered else f"MC-Dropout round after epoch {trainer.current_epoch}: no case")
    return values


class MCDropoutRounds:
    """Trainer mixin: a round (:func:`run_round`) at the end of every ``mc_every``-th epoch, the plan in the log and
    the files of a restored table rewritten at the start, and the difficulty table and ``eps1`` in the checkpoint
    (``--c`` restores them)."""

    def on_train_start(self):
        super().on_train_start()
        self.mc_clock = time.perf_counter()
        if self.mc_every:
            self.print_to_log_file(describe(self))
        if self.difficulty.rows:
            write_files(self)

    def on_epoch_end(self):
        if self.mc_every and (self.current_epoch + 1) % self.mc_every == 0:
            self.run_mc_round()
        super().on_epoch_end()

    def run_mc_round(self) -> dict[str, float]:
        """One MC-Dropout round now (:func:`run_round`)."""
        return run_round(self)

    def get_extra_state(self) -> dict:
        return {**super().get_extra_state(), "mc_difficulty": self.difficulty.state_dict(),
                "mc_epsilon": dict(self.epsilon)}

    def set_extra_state(self, state: dict) -> None:
        super().set_extra_state(state)
        self.difficulty.load_state_dict(state.get("mc_difficulty", {}))
        self.epsilon = {str(k): float(v) for k, v in state.get("mc_epsilon", {}).items()}
        if self.difficulty.rows:
            self.print_to_log_file(f"nnunet_fracture: restored the MC-Dropout difficulty of "
                                   f"{len(self.difficulty.cases)} case(s) from {len(self.difficulty.rows)} round(s)")
