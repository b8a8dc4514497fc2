"""The synthetic spine phantom: anatomy intensities, fracture ground truth, boxes, determinism, CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunet_fracture.cli import main
from nnunet_fracture.dataset_conversion.phantom import generate_case, is_fractured, write_phantom
from nnunet_fracture.dataset_conversion.phantom_anatomy import field_of_view, sample_spine
from nnunet_fracture.dataset_conversion.phantom_fractures import sample_fractures
from nnunet_fracture.dataset_conversion.phantom_render import TISSUE

from phantom_cases import cases_with  # (the test folder is on sys.path: pytest prepend import mode)

# Written out here, not imported, so the test checks the generator against VerSe's numbering.
VERSE = {"T4": 11, "T5": 12, "T6": 13, "T7": 14, "T8": 15, "T9": 16, "T10": 17, "T11": 18, "T12": 19,
         "L1": 20, "L2": 21, "L3": 22, "L4": 23, "L5": 24}
HEADER = ["case_id", "x_min", "y_min", "z_min", "x_max", "y_max", "z_max", "space", "label", "grade"]


def arr(img: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(img)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("ph") / "phantom", n_cases=5, seed=11)


def read_rows(folder: Path) -> list[dict]:
    with open(folder / "boxes.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HEADER
        return list(reader)


def box_slices(row: dict) -> tuple[slice, slice, slice]:
    lo = [int(row[k]) for k in ("x_min", "y_min", "z_min")]
    hi = [int(row[k]) for k in ("x_max", "y_max", "z_max")]
    return slice(lo[2], hi[2] + 1), slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1)


def test_noise_free_intensities_match_tissues():
    case = generate_case(1, seed=5, noise=False, blur=False)
    ct, tissue = arr(case.image).astype(float), case.tissue
    assert arr(case.image).dtype == np.int16

    def sample(name: str) -> np.ndarray:
        values = ct[tissue == TISSUE[name]]
        assert values.size > 50, name
        return values

    cortical = sample("cortical")
    assert 700 <= np.percentile(cortical, 90) <= 1000 and cortical.max() <= 1000
    assert 150 <= np.median(sample("cancellous")) <= 300
    assert 60 <= np.median(sample("disc")) <= 100
    assert 30 <= np.median(sample("soft")) <= 60
    assert -120 <= np.median(sample("fat")) <= -70
    assert 400 <= np.median(sample("posterior")) <= 800
    # The far posterior rows of the field of view are outside the body: air.
    assert np.median(ct[:, -2:, :]) == -1000
    # Every slice shows bone of a labelled vertebra in the middle of the image.
    vert = arr(case.vertebrae)
    assert all(vert[k].any() for k in range(vert.shape[0]))
    assert set(np.unique(vert)) - {0} <= set(VERSE.values())


def test_realistic_case_noise_and_levels():
    case = generate_case(2, seed=5)
    ct = arr(case.image).astype(float)
    tissue = case.tissue
    soft = ndimage.binary_erosion(tissue == TISSUE["soft"], iterations=3)
    assert 15 <= ct[soft].std() <= 60  # noise sigma 20-40 HU, plus a little structure
    assert 25 <= np.median(ct[soft]) <= 65
    canc = ndimage.binary_erosion(tissue == TISSUE["cancellous"], iterations=2) & (arr(case.mask) == 0)
    assert 140 <= np.median(ct[canc]) <= 310
    assert ct[tissue == TISSUE["cortical"]].mean() > np.median(ct[canc]) + 150  # shell brighter even blurred
    assert arr(case.image).size <= 1_500_000


def test_default_field_of_view_fits_voxel_budget():
    for index in range(40):
        rng = np.random.default_rng([3, index, 0])
        spine = sample_spine(rng)
        run, grid = field_of_view(spine, rng, (1.5, 1.5, 1.5))
        assert 4 <= len(run) <= 6
        assert [VERSE[n] for n in run] == list(range(VERSE[run[0]], VERSE[run[0]] + len(run)))
        assert int(np.prod(grid.size)) <= 1_500_000
        assert grid.size[:2] == (96, 96)


def test_written_files_masks_inside_boxes_and_vertebrae(written):
    rows = read_rows(written)
    meta = json.loads((written / "phantom.json").read_text(encoding="utf-8"))
    assert meta["seed"] == 11 and meta["n_cases"] == 5 and "version" in meta
    ids = [c["case_id"] for c in meta["cases"]]
    assert ids == [f"phantom_{i:03d}" for i in range(5)]
    n_normal = n_fractured = 0
    for case_meta in meta["cases"]:
        cid = case_meta["case_id"]
        ct_img = sitk.ReadImage(str(written / "images" / f"{cid}.nii.gz"))
        mask_img = sitk.ReadImage(str(written / "masks" / f"{cid}.nii.gz"))
        vert_img = sitk.ReadImage(str(written / "vertebrae" / f"{cid}.nii.gz"))
        assert ct_img.GetPixelID() == sitk.sitkInt16
        assert mask_img.GetPixelID() == vert_img.GetPixelID() == sitk.sitkUInt8
        for other in (mask_img, vert_img):
            assert other.GetSize() == ct_img.GetSize() and other.GetSpacing() == ct_img.GetSpacing()
            assert other.GetOrigin() == ct_img.GetOrigin() and other.GetDirection() == ct_img.GetDirection()
        assert any(abs(o) > 1 for o in ct_img.GetOrigin())
        mask, vert = arr(mask_img), arr(vert_img)
        assert set(np.unique(mask)) <= {0, 1}
        case_rows = [r for r in rows if r["case_id"] == cid]
        assert len(case_rows) == len(case_meta["fractures"])
        if not case_rows:
            n_normal += 1
            assert not mask.any()
            continue
        n_fractured += 1
        assert 1 <= len(case_rows) <= 3
        assert len({r["label"] for r in case_rows}) == len(case_rows)  # distinct vertebrae
        covered = np.zeros(mask.shape, dtype=bool)
        for row in case_rows:
            assert row["space"] == "voxel" and row["label"] in case_meta["vertebrae"]
            assert row["grade"] in {"1", "2", "3"}
            sl = box_slices(row)
            own = np.zeros(mask.shape, dtype=bool)
            own[sl] = (mask[sl] == 1) & (vert[sl] == VERSE[row["label"]])
            assert own.any()
            # The box is the fracture's extent grown by 1-4 voxels per side (less only at the image edge).
            idx = np.nonzero(own)
            size = mask.shape
            for axis_np, axis_itk, key in ((2, 0, "x"), (1, 1, "y"), (0, 2, "z")):
                lo, hi = int(row[f"{key}_min"]), int(row[f"{key}_max"])
                gap_lo, gap_hi = idx[axis_np].min() - lo, hi - idx[axis_np].max()
                assert 1 <= gap_lo <= 4 or (lo == 0 and gap_lo >= 0)
                assert 1 <= gap_hi <= 4 or (hi == size[axis_np] - 1 and gap_hi >= 0)
            # The fracture region is part of the vertebra, not all of it.
            assert own.sum() < 0.6 * (vert == VERSE[row["label"]]).sum()
            covered |= own
        # Every mask voxel belongs to a box of its own vertebra: whole components lie in boxes.
        assert np.array_equal(covered, mask == 1)
        components, n = ndimage.label(mask, structure=np.ones((3, 3, 3)))
        for c in range(1, n + 1):
            comp = components == c
            assert any(comp[box_slices(r)].sum() == comp.sum() for r in case_rows)
    assert n_normal >= 1 and n_fractured >= 3


def test_grades_follow_height_loss(written):
    meta = json.loads((written / "phantom.json").read_text(encoding="utf-8"))
    for case_meta in meta["cases"]:
        for fr in case_meta["fractures"]:
            if fr["type"] == "cleft":
                assert fr["grade"] == 1 and fr["height_loss"] == 0
            else:
                loss = fr["height_loss"]
                assert loss >= 0.2
                assert fr["grade"] == (3 if loss >= 0.4 else 2 if loss >= 0.25 else 1)
                if fr["type"] == "wedge":
                    assert fr["height_losses"]["anterior"] > fr["height_losses"]["posterior"]


def test_same_seed_byte_identical_other_seed_differs(tmp_path):
    a = write_phantom(tmp_path / "a", n_cases=2, seed=3)
    b = write_phantom(tmp_path / "b", n_cases=2, seed=3)
    c = write_phantom(tmp_path / "c", n_cases=2, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 2 * 3 + 2
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "images/phantom_000.nii.gz").read_bytes() != (c / "images/phantom_000.nii.gz").read_bytes()


def test_anatomy_is_physical_whatever_the_spacing():
    iso = generate_case(0, seed=7, noise=False, blur=False)
    thick = generate_case(0, seed=7, spacing=(0.8, 0.8, 2.5), noise=False, blur=False)
    assert thick.image.GetSpacing() == (0.8, 0.8, 2.5)
    assert thick.image.GetSize()[:2] == (180, 180)
    assert iso.visible == thick.visible
    ext_iso = np.array(iso.image.GetSize()) * np.array(iso.image.GetSpacing())
    ext_thick = np.array(thick.image.GetSize()) * np.array(thick.image.GetSpacing())
    assert np.all(np.abs(ext_iso - ext_thick) <= 2.5)

    def stats(case, label):
        v = arr(case.vertebrae) == label
        sp = np.array(case.image.GetSpacing())
        zz, yy, xx = np.nonzero(v)
        centroid = np.array(case.image.GetOrigin()) + sp * np.array([xx.mean(), yy.mean(), zz.mean()])
        return v.sum() * sp.prod(), centroid

    for name in iso.visible:
        vol_a, cen_a = stats(iso, VERSE[name])
        vol_b, cen_b = stats(thick, VERSE[name])
        assert abs(vol_a - vol_b) / vol_a < 0.08, name
        assert np.linalg.norm(cen_a - cen_b) < 1.5, name
    # A body's height along z in mm (column through the body's centre) agrees within a thick slice.
    name = iso.visible[len(iso.visible) // 2]

    def body_height(case) -> float:
        cort = (case.tissue == TISSUE["cortical"]) | (case.tissue == TISSUE["cancellous"])
        body = cort & (arr(case.vertebrae) == VERSE[name])
        zz, yy, xx = np.nonzero(body)
        col = body[:, int(np.median(yy)), int(np.median(xx))]
        return col.sum() * case.image.GetSpacing()[2]

    assert abs(body_height(iso) - body_height(thick)) <= 2.5 + 1e-6
    # Fracture ground truth has the same physical volume (within partial-volume effects).
    for fa, fb in zip(iso.fractures, thick.fractures):
        va = fa["mask_voxels"] * np.prod(iso.image.GetSpacing())
        vb = fb["mask_voxels"] * np.prod(thick.image.GetSpacing())
        assert abs(va - vb) / va < 0.3


def _contrast(case, kind: str) -> list[float]:
    ct, vert = arr(case.image).astype(float), arr(case.vertebrae)
    out = []
    for k, fr in enumerate(case.fractures, start=1):
        if (fr["type"] == "cleft") != (kind == "cleft"):
            continue
        own = case.instances == k
        lo, hi = fr["box"]["lo"], fr["box"]["hi"]
        near = np.zeros_like(own)
        near[lo[2]:hi[2] + 1, lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
        around = near & ~own & (vert == fr["label"]) & (case.tissue == TISSUE["cancellous"])
        out.append(ct[own].mean() - ct[around].mean())
    return out


def test_cleft_darker_and_sclerotic_band_brighter_than_cancellous_bone():
    clefts = [d for case in cases_with("cleft", 2) for d in _contrast(case, "cleft")]
    bands = [d for case in cases_with("wedge", 2) for d in _contrast(case, "band")]
    assert clefts and bands
    assert all(-400 < d < -30 for d in clefts), clefts  # visible, yet below the contrast of bone to soft tissue
    assert all(60 < d < 500 for d in bands), bands


def test_case_mix_is_guaranteed_and_varied():
    for seed in range(5):
        status = [is_fractured(i, seed) for i in range(50)]
        for block in range(10):
            chunk = status[5 * block:5 * block + 5]
            assert chunk.count(False) == 1 and chunk[0]
    kinds, counts = set(), set()
    for index in range(60):
        rng = np.random.default_rng([1, index, 0])
        spine = sample_spine(rng)
        run, _ = field_of_view(spine, rng, (1.5, 1.5, 1.5))
        frs = sample_fractures(rng, spine, run, True)
        assert len({f.vertebra for f in frs}) == len(frs) and set(f.vertebra for f in frs) <= set(run)
        kinds |= {f.kind for f in frs}
        counts.add(len(frs))
    assert kinds == {"wedge", "compression", "cleft"} and counts == {1, 2, 3}


def test_refuses_existing_folder_and_validates(tmp_path):
    out = write_phantom(tmp_path / "p", n_cases=1, seed=0, spacing=(2.0, 2.0, 2.0))
    (out / "stale.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"--overwrite") as err:
        write_phantom(out, n_cases=1, seed=0)
    assert str(out) in str(err.value)
    write_phantom(out, n_cases=1, seed=1, spacing=(2.0, 2.0, 2.0), overwrite=True)
    assert not (out / "stale.txt").exists() and json.loads((out / "phantom.json").read_text(encoding="utf-8"))["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no temporary folders left behind
    for kwargs in ({"n_cases": 0, "seed": 0}, {"n_cases": 1, "seed": -1},
                   {"n_cases": 1, "seed": 0, "spacing": (1.0, 0.0, 1.0)}):
        with pytest.raises(ValueError):
            write_phantom(tmp_path / "q", **kwargs)
    assert not (tmp_path / "q").exists()


def test_cli_phantom(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["phantom", str(out), "--cases", "1", "--seed", "2", "--spacing", "2", "2", "3"]) == 0
    img = sitk.ReadImage(str(out / "images" / "phantom_000.nii.gz"))
    assert img.GetSpacing() == (2.0, 2.0, 3.0)
    assert main(["phantom", str(out), "--cases", "1"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["phantom", str(out), "--cases", "1", "--spacing", "2", "2", "3", "--overwrite"]) == 0
