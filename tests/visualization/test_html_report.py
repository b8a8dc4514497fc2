"""index.html: every figure and mesh linked relatively, grouped by case, metrics rendered, nothing external."""
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imsave

from nnunet_fracture.visualization.html_report import read_metrics, write_report


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.sections, self.current, self.by_section = [], [], None, {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "h2":
            self.current = attrs.get("id")
            self.sections.append(self.current)
        for key in ("src", "href"):
            if key in attrs:
                self.links.append(attrs[key])
                self.by_section.setdefault(self.current, []).append(attrs[key])


def _parse(index: Path) -> _Links:
    parser = _Links()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(path, np.random.default_rng(0).random((8, 8, 3)))
    return path


@pytest.fixture
def run(tmp_path):
    out = tmp_path / "out"
    for name in ("c1_mip.png", "c1_max.png", "c1_box1.png", "c1_3d.png"):
        _png(out / "cases" / "c1" / name)
    (out / "cases" / "c1" / "c1_fracture.stl").write_bytes(b"\0" * 84)
    (out / "cases" / "c1" / "case.json").write_text(json.dumps({
        "case": "c1", "max_probability": 0.91, "boxes": [{"box": 1, "lo_ijk": [1, 2, 3], "max_probability": 0.9}],
        "files": ["c1_max.png"]}))
    _png(out / "cases" / "c 2" / "c 2_max.png")  # a name that needs quoting in links
    _png(out / "training_batches" / "batch_0.png")
    metrics = tmp_path / "eval"
    (metrics / "figures").mkdir(parents=True)
    (metrics / "metrics.csv").write_text("case,dice,tp\nc1,0.812345,12\nc3,nan,0\n")
    (metrics / "summary.json").write_text(json.dumps({"n_cases": 2, "pooled": {"dice": 0.5}}))
    _png(metrics / "figures" / "pr_curve.png")
    _png(metrics / "figures" / "c1_overlay.png")
    return out, metrics


def test_every_figure_linked_relatively_and_exists(run):
    out, metrics = run
    index = write_report(out, metrics=metrics)
    links = _parse(index).links
    pngs = {p.relative_to(out).as_posix() for p in out.rglob("*.png")}
    from urllib.parse import unquote

    linked = {unquote(link) for link in links if not link.startswith("#")}
    assert pngs <= linked  # every PNG in the folder is on the page
    for link in links:
        assert not link.startswith(("http:", "https:", "/", "file:"))
        if not link.startswith("#"):
            assert (out / unquote(link)).is_file()
    assert "cases/c1/c1_fracture.stl" in linked
    assert "<script" not in index.read_text(encoding="utf-8")


def test_grouped_by_case_with_metrics(run):
    out, metrics = run
    parser = _parse(write_report(out, metrics=metrics))
    assert parser.sections[0] == "evaluation"
    c1 = parser.by_section["case-c1"]
    figures = [link for link in c1 if link.endswith(".png")]
    # the case's own figures in reading order, then its evaluation overlay
    assert figures[::2] == ["cases/c1/c1_max.png", "cases/c1/c1_box1.png", "cases/c1/c1_mip.png",
                            "cases/c1/c1_3d.png", "evaluation/c1_overlay.png"]
    assert "evaluation/pr_curve.png" in parser.by_section["evaluation"]
    assert "#case-c1" in parser.by_section["evaluation"]  # metrics rows link to the case sections
    assert "case-c3" in parser.sections  # a case with metrics but no figures still gets a section
    assert "training_batches/batch_0.png" in parser.by_section["group-training_batches"]
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "0.8123" in page and "pooled.dice" in page and "lo_ijk" in page


def test_evaluation_kept_when_rebuilt_without_metrics(run):
    out, metrics = run
    write_report(out, metrics=metrics)
    page = write_report(out).read_text(encoding="utf-8")  # e.g. a later training-batch run into the same folder
    assert "0.8123" in page and 'href="evaluation/metrics.csv"' in page
    assert (out / "evaluation" / "summary.json").is_file()


def test_report_without_metrics_and_empty_folder(tmp_path):
    page = write_report(tmp_path / "empty").read_text(encoding="utf-8")
    assert "No figures" in page


def test_metrics_folder_must_be_an_evaluation(tmp_path):
    with pytest.raises(FileNotFoundError, match="nnunet-fracture evaluate"):
        read_metrics(tmp_path)


def test_evaluation_opens_with_the_headline_and_figures_detail_collapsed_last(run):
    out, metrics = run
    (metrics / "summary.json").write_text(json.dumps({
        "n_cases": 2, "pooled": {"dice": 0.5, "precision": 0.25, "recall": 1.0},
        "pooled_threshold_free": {"pr_auc": 0.75, "best_threshold": {"f1": 0.6, "threshold": 0.3}},
        "detection": {"case": {"roc_auc": None}}, "slices": {"axial": {"roc_auc": 0.9}}}))
    page = write_report(out, metrics=metrics).read_text(encoding="utf-8")
    evaluation = page[page.index('id="evaluation"'):page.index('id="case-c1"')]
    headline = evaluation.index(">headline<")
    figure = evaluation.index("evaluation/pr_curve.png")
    per_case = evaluation.index("<h3>metrics.csv</h3>")
    detail = evaluation.index("<details><summary>all of summary.json</summary>")
    assert headline < figure < per_case < detail  # what matters first, the flat dump last and collapsed
    head_table = evaluation[headline:figure]
    for label, value in (("Dice (pooled voxels)", "0.5"), ("precision", "0.25"), ("PR-AUC (pooled voxels)", "0.75"),
                         ("best F1", "0.6"), ("at probability &gt;=", "0.3"), ("case-level detection AUC", "n/a")):
        assert f'<td class="text">{label}</td><td' in head_table and f">{value}</td>" in head_table, label
    assert "slices.axial.roc_auc" not in head_table and "slices.axial.roc_auc" in evaluation[detail:]
