"""dataset_conversion.dataset_folders: recovery after an interrupted --overwrite, and stale derived folders."""
from __future__ import annotations

import json

import pytest

from nnunet_fracture.dataset_conversion.dataset_folders import leftovers, recover_interrupted
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset

from test_raw_dataset import cases  # (the test folder is on sys.path: pytest prepend import mode)


def _moved_aside(raw, name="Dataset520_Old", tag="0123abcd"):
    """What a kill between install's two renames left: the old dataset moved aside, no new one."""
    old = write_raw_dataset(cases(), 520, name.split("_", 1)[1], raw_root=raw)
    hidden = raw / f".{old.name}.old-{tag}"
    old.rename(hidden)
    return hidden


def test_a_dataset_moved_aside_by_an_interrupted_overwrite_comes_back(nnunet_env, capsys):
    raw = nnunet_env["nnUNet_raw"]
    _moved_aside(raw)
    (raw / ".Dataset520_New.partial-89abcdef").mkdir()  # the killed run's unfinished dataset
    assert sorted(p.name for p in raw.iterdir()) == [".Dataset520_New.partial-89abcdef", ".Dataset520_Old.old-0123abcd"]
    # the next run without --overwrite finds the ID taken again, by the restored dataset, and says what it did
    with pytest.raises(FileExistsError, match="Dataset520_Old"):
        write_raw_dataset(cases(), 520, "New")
    err = capsys.readouterr().err
    assert "restored" in err and "Dataset520_Old" in err and "removed" in err and "partial-89abcdef" in err
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset520_Old"]
    assert json.loads((raw / "Dataset520_Old" / "dataset.json").read_text())["numTraining"] == 2


def test_overwrite_after_an_interrupted_overwrite_replaces_the_restored_dataset(nnunet_env):
    raw = nnunet_env["nnUNet_raw"]
    _moved_aside(raw)
    write_raw_dataset(cases()[:1], 520, "New", overwrite=True)
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset520_New"]
    assert json.loads((raw / "Dataset520_New" / "dataset.json").read_text())["numTraining"] == 1


def test_recover_interrupted_by_hand(tmp_path):
    raw = tmp_path
    (raw / "Dataset520_New").mkdir()
    (raw / ".Dataset520_Old.old-0123abcd").mkdir()  # trash of a replacement that landed
    (raw / ".Dataset521_Other.partial-0123abcd").mkdir()  # another ID: not ours to touch
    (raw / ".Dataset520_New.partial-xyz").mkdir()  # not a name we write
    assert leftovers(raw, 520) == {"old": [raw / ".Dataset520_Old.old-0123abcd"], "partial": []}
    notes = recover_interrupted(raw, 520)
    assert len(notes) == 1 and notes[0].startswith("removed")
    assert sorted(p.name for p in raw.iterdir()) == [".Dataset520_New.partial-xyz", ".Dataset521_Other.partial-0123abcd",
                                                     "Dataset520_New"]
    assert recover_interrupted(raw, 520) == []


def test_replacing_under_a_new_name_names_the_stale_preprocessed_folder(nnunet_env, capsys):
    write_raw_dataset(cases(), 520, "Old")
    (nnunet_env["nnUNet_preprocessed"] / "Dataset520_Old").mkdir()
    (nnunet_env["nnUNet_results"] / "Dataset520_Old").mkdir()
    capsys.readouterr()
    write_raw_dataset(cases(), 520, "New", overwrite=True)
    err = capsys.readouterr().err
    assert "More than one dataset name found" in err and "nnUNetv2_plan_and_preprocess -d 520" in err
    assert f"rm -r {nnunet_env['nnUNet_preprocessed'] / 'Dataset520_Old'} {nnunet_env['nnUNet_results'] / 'Dataset520_Old'}" in err
    write_raw_dataset(cases(), 520, "New", overwrite=True)  # (still stale: warned again)
    assert "Dataset520_Old" in capsys.readouterr().err
