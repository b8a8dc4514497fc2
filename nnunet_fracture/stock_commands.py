"""Run nnU-Net's stock command-line tools (``nnUNetv2_*``) from Python, the way a user would in a shell.

The demo and the end-to-end tests drive nnU-Net through its real entry points rather than its internals, so
what they prove is what a user gets. Output goes to a log file; a failure raises with the log's tail.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence


def find_command(name: str) -> str:
    """Absolute path of a console script, preferring the running interpreter's environment."""
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"command {name} not found next to {sys.executable} or on PATH; "
                                f"is nnunetv2 installed in this environment?")
    return found


def run_stock(args: Sequence[str], log_file: Path, env: Optional[Mapping[str, str]] = None,
              echo: bool = False) -> str:
    """Run ``args`` (its first element a console-script name such as ``nnUNetv2_train``).

    Args:
        args: the command line.
        log_file: stdout and stderr are appended here.
        env: environment variables added to (and overriding) ``os.environ``.
        echo: also stream the output to this process's stdout (progress bars of long steps).

    Returns:
        The command's output (stdout and stderr).

    Raises:
        RuntimeError: the command failed; the message holds the command and the last lines of its output.
    """
    command = [find_command(args[0]), *map(str, args[1:])]
    full_env = {**os.environ, **(env or {})}
    log_file.parent.mkdir(parents=True, exist_ok=True)
    output = []
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"\n$ {' '.join(map(str, args))}\n")
        log.flush()
        start = time.perf_counter()
        # nnU-Net prints non-ASCII (progress bars); decode as UTF-8 whatever this machine's locale says
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env,
                                   encoding="utf-8", errors="replace", bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            log.write(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
        returncode = process.wait()
        log.write(f"[exit code {returncode} after {time.perf_counter() - start:.1f} s]\n")
    if returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed with exit code {returncode}; "
                           f"last lines of its output (all of it in {log_file}):\n{''.join(output[-40:])}")
    return "".join(output)


def predict_command(images: Path | str, out: Path | str, dataset_id: int | str, trainer: str, plans: str,
                    configuration: str = "3d_fullres", fold: str | Sequence[str] = "all", device: str = "cpu",
                    tta: bool = True) -> list:
    """The ``nnUNetv2_predict`` command line that writes probabilities (``--save_probabilities``) for
    :func:`run_stock`, with :func:`predict_workers`; ``tta=False`` adds ``--disable_tta``. Several folds (a
    sequence) are ensembled, as with ``-f 0 1``."""
    folds = [fold] if isinstance(fold, str) else list(fold)
    return (["nnUNetv2_predict", "-i", images, "-o", out, "-d", dataset_id, "-c", configuration, "-f", *folds,
             "-tr", trainer, "-p", plans, "-device", device, "--save_probabilities", *predict_workers()]
            + ([] if tta else ["--disable_tta"]))


def predict_workers() -> list[str]:
    """``nnUNetv2_predict``'s worker counts: nnU-Net's own ``nnUNet_npp`` / ``nnUNet_nps`` variables when set, else
    one preprocessing and one export worker (nnU-Net's default of three each only competes for a small machine's
    cores). Both ``0`` is nnU-Net's sequential mode: no worker processes, each of which would import torch and
    nnU-Net first (about 5 s on a CPU), the quickest for a few small cases."""
    return ["-npp", os.environ.get("nnUNet_npp", "1"), "-nps", os.environ.get("nnUNet_nps", "1")]
