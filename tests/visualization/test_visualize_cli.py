"""`nnunet-fracture visualize --probabilities ...` end to end on a tiny synthetic case."""
import json
import re
import shutil

import numpy as np
import pytest

from nnunet_fracture.cli import main
from nnunet_fracture.visualization.prediction_figures import raw_dataset_inputs, visualize_predictions
from nnunet_fracture.visualization.surface_mesh import read_ply, read_stl
from visualization_helpers import SHAPE, probability_blob, write_case, write_image


@pytest.fixture
def files(tmp_path):
    return write_case(tmp_path / "in")


def test_all_outputs_and_facts(files, tmp_path):
    out = tmp_path / "out"
    (facts,) = visualize_predictions(files["predictions"], files["images"], out, boxes=files["boxes_file"],
                                     vertebrae=files["vertebrae"], ground_truth=files["ground_truth"])
    folder = out / "cases" / "c1"
    names = {p.name for p in folder.iterdir()}
    assert names == {"c1_box1.png", "c1_max.png", "c1_mip.png", "c1_3d.png", "c1_fracture.stl", "c1_bone.stl",
                     "case.json"}
    assert json.loads((folder / "case.json").read_text(encoding="utf-8")) == facts
    p = probability_blob()
    assert facts["max_probability"] == pytest.approx(0.9)
    assert facts["fracture_voxels"] == int((p >= 0.5).sum())
    assert facts["fracture_volume_mm3"] == pytest.approx((p >= 0.5).sum() * 0.8 * 1.0 * 2.5)
    assert facts["boxes"][0]["max_probability"] == pytest.approx(0.9)
    assert facts["bone_source"] == "vertebra label map"
    header, _, triangles = read_stl(folder / "c1_fracture.stl")
    assert "SPACE=LPS" in header and len(triangles) > 10


def test_cli_with_raw_dataset_layout_ply_and_metrics(files, tmp_path, capsys):
    raw = tmp_path / "Dataset777_Tiny"
    shutil.copytree(files["images"], raw / "imagesTr")
    shutil.copytree(files["vertebrae"], raw / "vertebraeTr")
    shutil.copytree(files["ground_truth"], raw / "groundTruthTr")
    shutil.copy(files["boxes_file"], raw / "boxes.json")
    inputs = raw_dataset_inputs(raw)
    assert inputs == {"images": raw / "imagesTr", "boxes": raw / "boxes.json", "vertebrae": raw / "vertebraeTr",
                      "ground_truth": raw / "groundTruthTr"}
    evaluation = tmp_path / "eval"
    assert main(["evaluate", str(files["predictions"]), str(files["ground_truth"]), "--out", str(evaluation),
                 "--images", str(files["images"])]) == 0
    out = tmp_path / "out"
    assert main(["visualize", "--probabilities", str(files["predictions"]), "--raw-dataset", str(raw),
                 "--out", str(out), "--mesh-format", "ply", "--threshold", "0.3", "--window", "40", "400",
                 "--ct-projection", "mean", "--metrics", str(evaluation)]) == 0
    comments, mesh = read_ply(out / "cases" / "c1" / "c1_fracture.ply")
    assert "SPACE=LPS" in comments and not mesh.is_empty
    page = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="#case-c1"' in page and "cases/c1/c1_3d.png" in page and "evaluation/c1_overlay.png" in page
    assert "report:" in capsys.readouterr().out


def test_cases_selection_and_no_3d(files, tmp_path):
    write_image(np.zeros(SHAPE, np.int16), files["images"] / "c2_0000.nii.gz")
    np.savez_compressed(files["predictions"] / "c2.npz", probabilities=np.zeros((1,) + SHAPE, np.float32))
    out = tmp_path / "out"
    assert main(["visualize", "--probabilities", str(files["predictions"]), "--images", str(files["images"]),
                 "--out", str(out), "--cases", "c2", "--no-3d"]) == 0
    assert [p.name for p in (out / "cases").iterdir()] == ["c2"]
    assert {p.name for p in (out / "cases" / "c2").iterdir()} == {"c2_max.png", "c2_mip.png", "case.json"}
    # a rerun into a report refuses without --overwrite, and with it replaces the whole report: nothing stale from
    # a run with other settings survives (an old evaluation section or case folder was linked from index.html)
    (out / "cases" / "c2" / "c2_fracture.stl").write_bytes(b"old")
    (out / "cases" / "c2" / "c2_box7.png").write_bytes(b"old")
    (out / "evaluation").mkdir()
    (out / "evaluation" / "summary.json").write_text("{}")
    argv = ["visualize", "--probabilities", str(files["predictions"]), "--images", str(files["images"]),
            "--out", str(out), "--cases", "c2"]
    assert main(argv) == 1 and (out / "evaluation").is_dir()
    assert main(argv + ["--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cases", "index.html"]
    # (an all-zero CT has no bone at 200 HU and a zero probability no fracture: no meshes)
    assert {p.name for p in (out / "cases" / "c2").iterdir()} == {"c2_max.png", "c2_mip.png", "c2_3d.png",
                                                                   "case.json"}


@pytest.mark.parametrize("extra, message", [
    (["--cases", "c9"], "requested case.*c9"),
    (["--threshold", "1.0"], "strictly between 0 and 1"),
    (["--window", "400", "0"], "positive width"),
    (["--vertebrae", "/nonexistent"], "vertebra folder"),
    (["--metrics", "/nonexistent"], "nnunet-fracture evaluate"),
])
def test_cli_errors_without_traceback(files, tmp_path, capsys, extra, message):
    argv = ["visualize", "--probabilities", str(files["predictions"]), "--images", str(files["images"]),
            "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "nnunet-fracture visualize: error:" in err and "Traceback" not in err
    assert re.search(message, err)
    assert not (tmp_path / "out" / "cases").exists()  # checked before any drawing


def test_cli_missing_ct_names_case(files, tmp_path, capsys):
    (files["images"] / "c1_0000.nii.gz").unlink()
    assert main(["visualize", "--probabilities", str(files["predictions"]), "--images", str(files["images"]),
                 "--out", str(tmp_path / "out")]) == 1
    assert "case c1: no CT" in capsys.readouterr().err


def test_cli_needs_something_to_show(tmp_path, capsys):
    assert main(["visualize", "--out", str(tmp_path / "out")]) == 1
    assert "nothing to show" in capsys.readouterr().err
    assert main(["visualize", "--probabilities", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "--images" in capsys.readouterr().err


def test_raw_dataset_by_id(files, tmp_path, monkeypatch):
    raw_root = tmp_path / "nnUNet_raw"
    shutil.copytree(files["images"], raw_root / "Dataset778_Tiny" / "imagesTr")
    monkeypatch.setenv("nnUNet_raw", str(raw_root))
    assert raw_dataset_inputs("778")["images"] == raw_root / "Dataset778_Tiny" / "imagesTr"
    assert raw_dataset_inputs("778")["boxes"] is None
    with pytest.raises(FileNotFoundError, match="raw dataset"):
        raw_dataset_inputs("779")


def test_help_describes_outputs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["visualize", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--training-batch" in text and "SPACE=LPS" in text and "index.html" in text
