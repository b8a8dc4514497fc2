"""Training-iteration time of the plugin's network trainers as a ratio against the stock nnUNetTrainer, with
parameter counts and peak memory; and the attention U-Net side by side with MONAI's AttentionUnet.

    python benchmarks/network_overhead.py [--tiny] [--iterations 3] [--rounds 2] [--device cpu|cuda]
                                          [--no-memory] [--no-monai] [--out benchmarks/results]

Arms (same dataset, same plans, same run): nnUNetTrainer (stock), nnUNetTrainerAttentionUNet,
nnUNetTrainerSliceLSTM, nnUNetTrainerClsHead, nnUNetTrainerAdversarial (its step includes the discriminator's
update; the discriminator's parameters are counted apart, as they train but do not predict); an arm whose trainer
cannot be imported is skipped with a note. Goals (ratio of seconds per iteration against stock): attention <= 1.25,
slice LSTM <= 1.6, classification head <= 1.05; none for the adversarial trainer.

- Data: a 6-case phantom dataset, planned and preprocessed by the stock command; the default ``nnUNetPlans``
  3d_fullres configuration (the realistic network: 32..320 features, the planner's patch and batch size) or, with
  ``--tiny``, ``nnUNetPlansTiny`` (features <= 16, patch <= 32^3) for smoke runs.
- Time: ``train_step`` (forward, loss, backward, optimizer step; deep supervision as planned) on two batches
  prefetched per arm, so augmentation is not timed; ``--warmup`` untimed steps then ``--iterations`` timed ones
  per round; rounds alternate the arm order; the median over rounds is reported. torch.compile off.
- Memory: a fresh subprocess per arm builds the same trainer, prefetches its batches, resets the high-water marks
  and runs the same steps; it reports the peak resident set size of the steps (``VmHWM`` after writing 5 to
  ``/proc/self/clear_refs``, Linux >= 4.0; else the process's ``ru_maxrss``), also as the increase over the RSS
  before the first step, and on CUDA ``torch.cuda.max_memory_allocated`` (the number to quote on a GPU).
- MONAI: forward + backward (cross-entropy, no optimizer) of the plugin's AttentionUNet (deep supervision off)
  and ``monai.networks.nets.AttentionUnet`` on the same input (one batch of the plans' patch size), with the
  plans' features per stage as MONAI's channels and its strides; skipped when MONAI is missing
  (``pip install -c constraints.txt monai``).

Prints a table and writes ``network_overhead.json``. Ratios are what to quote; seconds depend on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from overhead_harness import (DATASET_NAME, fresh_workspace, interleaved_rounds, machine_info, make_trainer,
                              prepare_phantom_dataset, time_steps)

STOCK = "nnUNetTrainer"
ARMS = (STOCK, "nnUNetTrainerAttentionUNet", "nnUNetTrainerSliceLSTM", "nnUNetTrainerClsHead",
        "nnUNetTrainerAdversarial")
GOALS = {"nnUNetTrainerAttentionUNet": 1.25, "nnUNetTrainerSliceLSTM": 1.6, "nnUNetTrainerClsHead": 1.05}
PREFETCHED = 2
MIB = 2 ** 20


def trainer_class(name: str) -> Optional[type]:
    """The trainer class called ``name`` (stock or plugin), or None with a printed note when it is missing."""
    if name == STOCK:
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        return nnUNetTrainer
    try:
        import nnunet_fracture.trainers as trainers
    except Exception as e:  # a half-written plugin module must not stop the other arms
        print(f"note: skipping {name}: nnunet_fracture.trainers does not import ({type(e).__name__}: {e})")
        return None
    found = getattr(trainers, name, None)
    if found is None:
        print(f"note: skipping {name}: not (yet) exported by nnunet_fracture.trainers")
    return found


def parameter_count(network) -> int:
    from nnunet_fracture.networks.unwrap import unwrap_network

    return sum(p.numel() for p in unwrap_network(network).parameters())


def training_only_parameters(trainer) -> int:
    """Parameters that train beside the network but do not predict (the adversarial trainer's discriminator)."""
    updates = getattr(trainer, "discriminator_updates", None)
    return 0 if updates is None else sum(p.numel() for p in updates.loss.discriminator.parameters())


def prefetch(trainer) -> list:
    return [next(trainer.dataloader_train) for _ in range(PREFETCHED)]


# ------------------------------------------------------------------------------------------------ peak memory
def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MIB
    raise KeyError(field)


def measure_memory_here(name: str, plans: str, device: str, iterations: int, warmup: int) -> dict:
    """Child-process side of the memory measurement: build, prefetch, reset the high-water marks, step; report
    the peaks of the steps (MiB)."""
    import torch

    trainer = make_trainer(trainer_class(name), plans, device)
    batches = prefetch(trainer)
    before = _status_mib("VmRSS")
    try:  # Linux >= 4.0: reset the peak RSS, so that import and set-up peaks do not mask the steps'
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    time_steps(trainer, iterations, warmup, batches)
    peak = _status_mib("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB
    result = {"peak_rss_mib": round(peak, 1), "rss_before_steps_mib": round(before, 1),
              "rss_increase_during_steps_mib": round(peak - before, 1), "peak_rss_reset_before_steps": reset}
    if device == "cuda":
        result["peak_cuda_allocated_mib"] = round(torch.cuda.max_memory_allocated() / MIB, 1)
    return result


def memory_in_subprocess(name: str, plans: str, device: str, iterations: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--memory-arm", name, "--plans-name", plans, "--device", device,
               "--iterations", str(iterations), "--warmup", str(warmup)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"note: memory measurement of {name} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return {}
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ MONAI comparison
def monai_comparison(plans_name: str, device: str, iterations: int, warmup: int, rounds: int) -> dict:
    """Forward + backward of the plugin's AttentionUNet and MONAI's AttentionUnet on the same input."""
    try:
        from monai.networks.nets import AttentionUnet
    except ImportError:
        message = "MONAI is not installed (pip install -c constraints.txt monai); comparison skipped"
        print(f"note: {message}")
        return {"skipped": message}
    attention_trainer = trainer_class("nnUNetTrainerAttentionUNet")
    if attention_trainer is None:
        return {"skipped": "nnUNetTrainerAttentionUNet is missing"}
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    from torch.nn import functional as F

    plans = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET_NAME / f"{plans_name}.json").read_text())
    configuration = PlansManager(plans).get_configuration("3d_fullres")
    arch = configuration.network_arch_init_kwargs
    ours = attention_trainer.build_network_architecture(PlansManager(plans), configuration, 1, 2,
                                                        enable_deep_supervision=False)
    strides = [tuple(int(v) for v in s) for s in arch["strides"]]
    theirs = AttentionUnet(spatial_dims=3, in_channels=1, out_channels=2, channels=list(arch["features_per_stage"]),
                           strides=strides[1:], kernel_size=3)
    patch = tuple(configuration.patch_size)
    batch = configuration.batch_size
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, 1, *patch), generator=generator).to(device)
    y = torch.randint(0, 2, (batch, *patch), generator=generator).to(device)
    networks = {"plugin AttentionUNet": ours.to(device).train(), "MONAI AttentionUnet": theirs.to(device).train()}
    for net in networks.values():  # both must accept this input size
        with torch.no_grad():
            assert net(x[:1]).shape == (1, 2, *patch)

    def step(net):
        with torch.autocast(device, enabled=device == "cuda"):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        net.zero_grad(set_to_none=True)

    def measure(net):
        def run() -> float:
            for _ in range(warmup):
                step(net)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(iterations):
                step(net)
            if device == "cuda":
                torch.cuda.synchronize()
            return (time.perf_counter() - start) / iterations
        return run

    print(f"\nMONAI comparison: input {(batch, 1, *patch)}, channels {list(arch['features_per_stage'])}, strides "
          f"{strides[1:]} ...", flush=True)
    seconds = interleaved_rounds({k: measure(v) for k, v in networks.items()}, rounds)
    median = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = median["plugin AttentionUNet"] / median["MONAI AttentionUnet"]
    return {"input_shape": [batch, 1, *patch], "channels": list(arch["features_per_stage"]),
            "strides": [list(s) for s in strides[1:]],
            "seconds_forward_backward": {k: round(v, 4) for k, v in median.items()},
            "parameters": {k: sum(p.numel() for p in v.parameters()) for k, v in networks.items()},
            "ratio_plugin_vs_monai": round(ratio, 3),
            "faster": "plugin AttentionUNet" if ratio < 1 else "MONAI AttentionUnet",
            "note": "kernel size 3 everywhere in MONAI (the plans' kernels in the plugin's), instance norm in the "
                    "plugin's network and batch norm in MONAI's; no deep supervision in either"}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="time on nnUNetPlansTiny (smoke runs)")
    parser.add_argument("--iterations", type=int, default=3, help="timed train steps per arm and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed train steps per arm and round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the arm order reversed every other round")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-monai", action="store_true", help="skip the MONAI AttentionUnet comparison")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--memory-arm", help=argparse.SUPPRESS)  # internal: the per-arm memory subprocess
    parser.add_argument("--plans-name", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_arm:  # child process: the workspace comes with the environment
        print(json.dumps(measure_memory_here(args.memory_arm, args.plans_name, args.device, args.iterations,
                                             args.warmup)))
        return

    plans = "nnUNetPlansTiny" if args.tiny else "nnUNetPlans"
    work = fresh_workspace("nnunet_fracture_network_overhead_")
    print(f"preparing a 6-case phantom dataset in {work} ...", flush=True)
    prepare_phantom_dataset(work)
    classes = {name: trainer_class(name) for name in ARMS}
    classes = {name: cls for name, cls in classes.items() if cls is not None}
    trainers = {name: make_trainer(cls, plans, args.device) for name, cls in classes.items()}
    batches = {name: prefetch(trainer) for name, trainer in trainers.items()}

    def arm(name):
        return lambda: time_steps(trainers[name], args.iterations, args.warmup, batches[name])

    print(f"timing {', '.join(trainers)} on {plans} ({args.device}) ...", flush=True)
    seconds = interleaved_rounds({name: arm(name) for name in trainers}, args.rounds, label=lambda k: f"{k:>28}")
    median = {name: statistics.median(v) for name, v in seconds.items()}

    memory: dict[str, dict] = {}
    if not args.no_memory:
        print("\nmeasuring peak memory, one fresh process per arm ...", flush=True)
        for name in trainers:
            memory[name] = memory_in_subprocess(name, plans, args.device, args.iterations, args.warmup)
            print(f"{name:>28}: {memory[name]}", flush=True)

    rows = []
    for name, s in median.items():
        ratio = s / median[STOCK] if STOCK in median else None
        goal = GOALS.get(name)
        rows.append({"trainer": name, "seconds_per_iteration": round(s, 4),
                     "seconds_per_round": [round(v, 4) for v in seconds[name]],
                     "ratio_vs_stock": None if ratio is None else round(ratio, 3), "goal": goal,
                     "meets_goal": None if goal is None or ratio is None else ratio <= goal,
                     "parameters": parameter_count(trainers[name].network),
                     "training_only_parameters": training_only_parameters(trainers[name]), **memory.get(name, {})})
    skipped = [name for name in ARMS if name not in trainers]

    monai = {"skipped": "--no-monai"} if args.no_monai else monai_comparison(
        plans, args.device, args.iterations, args.warmup, args.rounds)

    memory_key = "peak_cuda_allocated_mib" if args.device == "cuda" else "peak_rss_mib"
    print(f"\n{'trainer':>28} {'s/iter':>9} {'vs stock':>9} {'goal':>6} {'met':>5} {'parameters':>12} "
          f"{memory_key:>24} {'rss_increase_mib':>17}")
    for r in rows:
        print(f"{r['trainer']:>28} {r['seconds_per_iteration']:9.4f} {r['ratio_vs_stock'] or float('nan'):9.3f} "
              f"{r['goal'] or '':>6} {'' if r['meets_goal'] is None else ('yes' if r['meets_goal'] else 'no'):>5} "
              f"{r['parameters']:>12,} {r.get(memory_key, ''):>24} {r.get('rss_increase_during_steps_mib', ''):>17}")
    for name in skipped:
        print(f"{name:>28} skipped (trainer missing)")
    if "ratio_plugin_vs_monai" in monai:
        s = monai["seconds_forward_backward"]
        print(f"\nforward+backward on {monai['input_shape']}: plugin AttentionUNet {s['plugin AttentionUNet']:.4f} s, "
              f"MONAI AttentionUnet {s['MONAI AttentionUnet']:.4f} s (ratio {monai['ratio_plugin_vs_monai']:.3f}); "
              f"faster: {monai['faster']}")

    args.out.mkdir(parents=True, exist_ok=True)
    result = {"plans": plans, "device": args.device, "rows": rows, "skipped": skipped, "monai": monai,
              "rounds": args.rounds, "iterations": args.iterations, "warmup": args.warmup,
              "memory_method": "a fresh subprocess per arm builds the trainer, prefetches, resets the high-water "
                               "marks and runs the same steps: peak RSS (VmHWM after /proc/self/clear_refs) and, on "
                               "CUDA, torch.cuda.max_memory_allocated",
              "timing_method": "train_step on prefetched batches (augmentation not timed), median over rounds",
              "machine": machine_info()}
    (args.out / "network_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out / 'network_overhead.json'}")


if __name__ == "__main__":  # nnU-Net's spawn pools re-import the main module
    main()
