"""io.output_folders: refuse to clobber or to replace an input, swap a staged folder into place."""
import pytest

from nnunet_fracture.io.output_folders import check_output_folder, check_output_not_an_input, replace_folder, swap_in


def test_refusals_name_the_folder_and_the_fix(tmp_path):
    check_output_folder(tmp_path / "new", overwrite=False)  # missing: fine
    (tmp_path / "empty").mkdir()
    check_output_folder(tmp_path / "empty", overwrite=False)  # empty: fine
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match=r"full exists and is not empty\. Fix: pass --overwrite"):
        check_output_folder(tmp_path / "full", overwrite=False)
    check_output_folder(tmp_path / "full", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        check_output_folder(tmp_path / "file", overwrite=True)
    with pytest.raises(ValueError, match="is or contains the input"):
        check_output_not_an_input(tmp_path, [tmp_path / "full" / "x"])
    check_output_not_an_input(tmp_path / "out", [tmp_path / "full"])


def test_swap_keeps_the_old_folder_until_told_and_replace_deletes_it(tmp_path):
    target, staged = tmp_path / "out", tmp_path / ".out.partial"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staged.mkdir()
    (staged / "new.txt").write_text("new")
    trash = swap_in(staged, target)
    assert (target / "new.txt").is_file() and (trash / "old.txt").read_text() == "old" and not staged.exists()
    again = tmp_path / ".again"
    again.mkdir()
    (again / "newer.txt").write_text("newer")
    replace_folder(again, target)
    assert [p.name for p in target.iterdir()] == ["newer.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, trash.name])  # only the first trash
