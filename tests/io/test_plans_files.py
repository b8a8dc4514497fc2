"""The plans-file lookup: the path when it is there, the command that makes it when it is not."""
import pytest

from nnunet_fracture.io.plans_files import plans_file

MAKE_IT = "run nnunet-fracture tiny-plans 654"


def test_the_plans_file_of_a_dataset_by_id_or_name(nnunet_env):
    folder = nnunet_env["nnUNet_preprocessed"] / "Dataset654_Spine"
    folder.mkdir()
    (folder / "nnUNetPlansTiny.json").write_text("{}")
    assert plans_file(654, "nnUNetPlansTiny", MAKE_IT) == folder / "nnUNetPlansTiny.json"
    assert plans_file("Dataset654_Spine", "nnUNetPlansTiny", MAKE_IT) == folder / "nnUNetPlansTiny.json"


def test_a_missing_plans_file_names_the_file_and_the_command(nnunet_env):
    (nnunet_env["nnUNet_preprocessed"] / "Dataset654_Spine").mkdir()
    with pytest.raises(FileNotFoundError, match=r"Dataset654_Spine/nnUNetPlansTiny\.json does not exist\. Fix: run "
                                                r"nnunet-fracture tiny-plans 654\."):
        plans_file(654, "nnUNetPlansTiny", MAKE_IT)


def test_an_unknown_dataset_names_the_folder_and_the_command(nnunet_env):
    with pytest.raises(FileNotFoundError, match=r"dataset 655 not found in nnUNet_preprocessed=.*Fix: run "
                                                r"nnunet-fracture tiny-plans 654\."):
        plans_file(655, "nnUNetPlansTiny", MAKE_IT)


def test_an_id_under_two_names_says_which_folders_to_remove(nnunet_env):
    for root, name in (("nnUNet_preprocessed", "Dataset654_Spine"), ("nnUNet_results", "Dataset654_Old")):
        (nnunet_env[root] / name).mkdir()
    with pytest.raises(FileExistsError, match="More than one dataset name found.*Fix: remove the folders"):
        plans_file(654, "nnUNetPlansTiny", MAKE_IT)
