"""Where a preprocessed dataset's plans file is, with errors that say which command makes it."""
from __future__ import annotations

from pathlib import Path

from nnunet_fracture.environment import nnunet_folder


def plans_file(dataset: str | int, plans: str, make_it: str) -> Path:
    """``$nnUNet_preprocessed/<dataset name>/<plans>.json`` of ``dataset`` (ID or ``DatasetXXX_NAME``).

    Args:
        dataset: dataset ID or name.
        plans: plans identifier (``nnUNetPlans``, ``nnUNetPlansTiny``, ...).
        make_it: the command(s) that write these plans, quoted in the fix of a missing file.

    Raises:
        EnvironmentNotConfigured: ``nnUNet_preprocessed`` is not set.
        FileExistsError: nnU-Net finds the ID under two names (folders left by a replaced dataset), with the fix.
        FileNotFoundError: the dataset or its plans file is missing, with ``make_it`` as the fix.
        ValueError: ``dataset`` is neither an ID nor a dataset name (nnU-Net's message).
    """
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    preprocessed = nnunet_folder("nnUNet_preprocessed")
    try:
        dataset_name = maybe_convert_to_dataset_name(str(dataset))
    except RuntimeError as e:
        first_sentence = str(e).splitlines()[0].split(". ")[0]  # nnU-Net's message goes on over several lines
        if "More than one dataset name found" in str(e):  # preprocessing again would hit the same error
            raise FileExistsError(f"dataset {dataset!r}: {first_sentence} (nnU-Net). Fix: remove the folders of "
                                  f"this ID whose name is not the raw dataset's (under nnUNet_preprocessed / "
                                  f"nnUNet_results: data of a replaced dataset), then nnUNetv2_plan_and_preprocess "
                                  f"-d {dataset}.") from None
        raise FileNotFoundError(f"dataset {dataset!r} not found in nnUNet_preprocessed={preprocessed} "
                                f"({first_sentence}). Fix: {make_it}.") from None
    path = preprocessed / dataset_name / f"{plans}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. Fix: {make_it}.")
    return path
