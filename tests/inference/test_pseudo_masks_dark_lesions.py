"""``pseudo-masks --dark-lesions``: a box whose weak model prefers the dark part of its bone gets the dark voxels
as its mask, and ``--ignore-dark-margin`` leaves the voxels around it unlabelled in the exported dataset, end to
end on a tiny dataset with hand-computed masks; the options' input errors."""
from __future__ import annotations

import numpy as np
import pytest

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.case import CaseRecord, VoxelBox
from nnunet_fracture.dataset_conversion.raw_dataset import write_raw_dataset
from nnunet_fracture.inference.dataset_export import IGNORE_LABEL
from nnunet_fracture.inference.label_options import LabelOptions
from nnunet_fracture.inference.pseudo_masks import write_pseudo_masks

from pseudo_mask_cases import SHAPE, on_grid, prediction_folder, read, rows

# numpy [k, j, i] of shape (4, 5, 6), all of it vertebra L1. Box "cleft" (i 0-2): a 0 HU cleft at i = 0 in 300 HU
# bone; the weak model gives P 0.6 on the cleft, 0.9 on the healthy bone at i = 1 (its blob), 0.1 at i = 2, so the
# fixed rule keeps i 0-1. Box "band" (i 3-5): a 700 HU band at i = 5, P 0.9 there and 0.1 elsewhere.
CLEFT, BAND = VoxelBox((0, 0, 0), (2, 4, 3), "L1"), VoxelBox((3, 0, 0), (5, 4, 3), "L1")


@pytest.fixture
def spine(nnunet_env):
    ct = np.full(SHAPE, 300, np.int16)
    ct[..., 0], ct[..., 5] = 0, 700
    case = CaseRecord("c", on_grid(ct), [CLEFT, BAND], None, on_grid(np.full(SHAPE, 20, np.uint8)), "c.nii.gz")
    return write_raw_dataset([case], 506, "Cleft", raw_root=nnunet_env["nnUNet_raw"])


@pytest.fixture
def weak(tmp_path):
    p = np.full(SHAPE, 0.1, np.float32)
    p[..., 0], p[..., 1], p[..., 5] = 0.6, 0.9, 0.9
    return prediction_folder(tmp_path / "pred", {"c": p})


def along_i(*kept: int) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[..., list(kept)] = 1
    return mask


def test_the_cleft_box_gets_its_dark_voxels_and_the_band_box_its_rule_mask(spine, weak, tmp_path):
    # cleft box: P on the dark part (i = 0) 0.6 > 0.5 on the bright part (i 1-2); median HU 300, so < 200 HU is
    # dark. Band box: P 0.1 on the 300 HU part < 0.9 on the 700 HU part: the fixed rule's mask stays.
    prov = write_pseudo_masks([weak], spine, tmp_path / "out",
                              options=LabelOptions(inside_vertebra=0.0, dark_lesions=100))
    assert np.array_equal(read(tmp_path / "out" / "masks" / "c.nii.gz"), along_i(0, 5))
    table = rows(tmp_path / "out")
    assert [table[("c", b)]["polarity"] for b in (1, 2)] == ["dark", "bright"]
    assert float(table[("c", 1)]["mask_contrast_hu"]) == -300.0 and int(table[("c", 1)]["voxels_kept"]) == 20
    assert float(table[("c", 1)]["mask_confidence"]) == pytest.approx(0.6)
    assert prov["dark_lesions"] == {"below_hu": 100.0, "grow_hu": 0.0, "dark_boxes": [{"case": "c", "box_id": 1}]}


def test_a_dark_box_is_not_refined_its_lesion_is_its_mask(spine, weak, tmp_path, monkeypatch):
    # with the random walker on, only the band box is walked (its P >= 0.9 seeds the walker); the cleft box keeps
    # its dark voxels, and its walk is not run at all
    import nnunet_fracture.inference.pseudo_masks as pseudo_masks

    walked = []

    def counted(ct_hu, probability, region, *args, **kwargs):
        walked.append(region)
        return refine_box(ct_hu, probability, region, *args, **kwargs)

    refine_box = pseudo_masks.refine_box
    monkeypatch.setattr(pseudo_masks, "refine_box", counted)
    write_pseudo_masks([weak], spine, tmp_path / "out", refine="random_walker",
                       options=LabelOptions(inside_vertebra=0.0, dark_lesions=100))
    table = rows(tmp_path / "out")
    # the band box was walked: its walk keeps i = 5, a third of the box, above the 30 % size bound, so it is reset
    assert table[("c", 1)]["refinement"] == "dark_lesion" and table[("c", 2)]["refinement"] == "reset"
    assert len(walked) == 1 and walked[0][2] == slice(3, 6)  # the band box's region (i 3-5) alone
    assert np.array_equal(read(tmp_path / "out" / "masks" / "c.nii.gz")[..., :3], along_i(0)[..., :3])


def test_the_exported_labels_leave_the_margin_of_the_dark_lesion_unlabelled(spine, weak, nnunet_env, tmp_path):
    prov = write_pseudo_masks([weak], spine, tmp_path / "out", export_dataset=507, export_name="CleftPseudo",
                              options=LabelOptions(inside_vertebra=0.0, dark_lesions=100, ignore_dark_margin=1))
    labels = read(nnunet_env["nnUNet_raw"] / "Dataset507_CleftPseudo" / "labelsTr" / "c.nii.gz")
    # the cleft (i = 0) keeps its label; one step beyond it, i = 1, is ignored; the band box has no margin
    expected = along_i(0, 5)
    expected[..., 1] = IGNORE_LABEL
    assert np.array_equal(labels, expected) and prov["ignore_dark_margin"] == 1


def test_dark_grow_adds_the_less_dark_bone_touching_the_lesion(nnunet_env, weak, tmp_path):
    # as `spine`, but a quarter of the column next to the cleft (i = 1, k = 0) is 210 HU: the cleft box's bone is
    # 20 voxels of 0, 5 of 210 and 35 of 300 HU, median 300; the core (< 200) is i = 0, and --dark-grow 75 (< 225)
    # adds the 210 HU voxels, which touch it
    ct = np.full(SHAPE, 300, np.int16)
    ct[..., 0], ct[..., 5], ct[0, :, 1] = 0, 700, 210
    case = CaseRecord("c", on_grid(ct), [CLEFT, BAND], None, on_grid(np.full(SHAPE, 20, np.uint8)), "c.nii.gz")
    write_raw_dataset([case], 509, "CleftFlank", raw_root=nnunet_env["nnUNet_raw"])
    for grow, out in ((0, "core"), (75, "grown")):
        main(["pseudo-masks", str(weak), "--dataset", "509", "--out", str(tmp_path / out), "--refine", "none",
              "--inside-vertebra", "0", "--dark-lesions", "100", "--dark-grow", str(grow)])
    assert np.array_equal(read(tmp_path / "core" / "masks" / "c.nii.gz"), along_i(0, 5))
    expected = along_i(0, 5)
    expected[0, :, 1] = 1
    assert np.array_equal(read(tmp_path / "grown" / "masks" / "c.nii.gz"), expected)


def test_off_by_default(spine, weak, tmp_path):
    prov = write_pseudo_masks([weak], spine, tmp_path / "out", options=LabelOptions(inside_vertebra=0.0))
    assert np.array_equal(read(tmp_path / "out" / "masks" / "c.nii.gz"), along_i(0, 1, 5))
    assert prov["dark_lesions"] is None and {r["polarity"] for r in rows(tmp_path / "out").values()} == {""}


def test_cli_and_its_errors(spine, weak, tmp_path, capsys):
    main(["pseudo-masks", str(weak), "--dataset", "506", "--out", str(tmp_path / "out"), "--refine", "none",
          "--inside-vertebra", "0", "--dark-lesions", "100"])
    assert np.array_equal(read(tmp_path / "out" / "masks" / "c.nii.gz"), along_i(0, 5))
    with pytest.raises(ValueError, match="--dark-lesions compares each box's bone only.*Fix: add --inside-vertebra"):
        write_pseudo_masks([weak], spine, tmp_path / "other", options=LabelOptions(dark_lesions=100))
    with pytest.raises(ValueError, match="--ignore-dark-margin widens the masks of dark lesions.*Fix: add"):
        write_pseudo_masks([weak], spine, tmp_path / "other",
                           export_dataset=508, export_name="Other",
                           options=LabelOptions(inside_vertebra=0.0, ignore_dark_margin=1))
    assert main(["pseudo-masks", str(weak), "--dataset", "506", "--out", str(tmp_path / "other"), "--inside-vertebra",
                 "0", "--dark-lesions", "100", "--dark-grow", "150"]) == 1
    assert "error: --dark-grow 150 must be less than --dark-lesions 100" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--dark-lesions must be a HU difference"):
        write_pseudo_masks([weak], spine, tmp_path / "other",
                           options=LabelOptions(inside_vertebra=0.0, dark_lesions=-5))
    assert not (tmp_path / "other").exists()
