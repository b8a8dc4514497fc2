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


def test_a_staged_folder_replaces_the_output_only_when_complete(tmp_path):
    from nnunet_fracture.io.output_folders import staged_folder

    out = tmp_path / "report"
    with staged_folder(out, overwrite=False) as stage:
        (stage / "summary.json").write_text("new")
        assert not out.exists()  # nothing visible while it is written
    assert (out / "summary.json").read_text() == "new"
    with pytest.raises(FileExistsError, match="--overwrite"):
        with staged_folder(out, overwrite=False):
            pass
    with pytest.raises(RuntimeError, match="last case failed"):
        with staged_folder(out, overwrite=True) as stage:
            (stage / "half.png").write_text("x")
            raise RuntimeError("last case failed")
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # no staging folder left behind
    assert [p.name for p in out.iterdir()] == ["summary.json"]  # the old report untouched
    with staged_folder(out, overwrite=True) as stage:
        (stage / "metrics.csv").write_text("y")
    assert [p.name for p in out.iterdir()] == ["metrics.csv"]  # stale files of the old report gone
    with pytest.raises(ValueError, match="is or contains the input"):
        with staged_folder(tmp_path, overwrite=True, inputs=[out, None]):
            pass
