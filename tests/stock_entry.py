"""Run a stock ``nnUNetv2_*`` command inside the test process: the same entry point, argument parser and trainer
look-up (``nnUNet_extTrainer``) as the console script, without the 6-8 s a fresh interpreter spends importing torch
and nnU-Net on this CPU.

The trainer tests and the VAE prior's end-to-end test use it for their short train/predict runs. The runs that prove
the installed commands work as a user types them stay subprocesses (``nnunet_fracture.stock_commands.run_stock``):
tests/test_end_to_end.py, the demo, self-training, the session's weak-box model (tests/weak_box_model.py), every
``nnUNetv2_plan_and_preprocess`` and tests/trainers/test_base_trainer.py (train, resume, nnU-Net's own validation in
its worker processes, predict).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Mapping, Optional, Sequence


def run_entry_point(args: Sequence, log_file: Path, env: Optional[Mapping[str, str]] = None) -> str:
    """Call the console script ``args[0]``'s entry point with ``args[1:]`` as its command line and ``env`` added to
    the environment; its output is appended to ``log_file`` and returned. The environment, ``sys.argv`` and torch's
    thread count are restored afterwards.

    Raises:
        RuntimeError: the command failed (an exception or a non-zero exit); the message holds its output's tail.
    """
    import torch

    (entry,) = entry_points(group="console_scripts", name=str(args[0]))
    argv = [str(a) for a in args]
    saved_env, saved_argv, threads = dict(os.environ), sys.argv, torch.get_num_threads()
    output = io.StringIO()
    failure, start = None, time.perf_counter()
    try:
        os.environ.update(env or {})
        sys.argv = argv
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                entry.load()()
            except SystemExit as exit_:
                if exit_.code not in (None, 0):
                    failure = f"exit code {exit_.code}"
            except Exception as error:  # noqa: BLE001 - reported with the command's output below
                failure = f"{type(error).__name__}: {error}"
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        torch.set_num_threads(threads)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(argv)} (in process)\n{output.getvalue()}"
                      f"[{failure or 'done'} after {time.perf_counter() - start:.1f} s]\n")
    if failure is not None:
        raise RuntimeError(f"{' '.join(argv)} failed ({failure}); last lines of its output (all of it in "
                           f"{log_file}):\n{''.join(output.getvalue().splitlines(True)[-40:])}")
    return output.getvalue()
