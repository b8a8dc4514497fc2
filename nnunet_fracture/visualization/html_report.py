"""``OUT/index.html``: one page tying a run's figures, meshes and metrics together.

Plain HTML with an inline style sheet, relative links only and no external resources, so the folder can be
zipped, copied or opened from disk. The page is rebuilt from what is in ``OUT`` each time, so running
``visualize`` for predictions and for training batches into the same folder gives one report of both.

Sections:

- **Evaluation** (with ``metrics``, an ``nnunet-fracture evaluate`` output folder), what matters first: a short
  headline table (Dice, precision, recall, PR-AUC, best F1, case-level detection AUC), the pooled figures, then
  ``metrics.csv`` as a table whose case names link to the case sections, links to the other tables, and the whole
  of ``summary.json`` collapsed at the end. The evaluation's tables and figures are copied into ``OUT/evaluation/``, so the report does
  not depend on where the metrics folder lives and a later run without ``metrics`` still shows them.
- **One section per case**: the facts of ``cases/<case>/case.json``, the case's metrics row, its figures (the
  evaluation's ``<case>_*.png`` included) and links to its mesh files.
- **Training batches**, and any other PNG found in ``OUT``, grouped by folder.
"""
from __future__ import annotations

import csv
import html
import json
import math
import shutil
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from nnunet_fracture.visualization.prediction_figures import CASES_FOLDER

EVALUATION_FOLDER = "evaluation"
TRAINING_BATCH_FOLDER = "training_batches"
MESH_SUFFIXES = (".stl", ".ply", ".obj")
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-top: 0.8em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; } nav a { margin-right: 0.8em; }
"""


def _href(path: Path, out: Path) -> str:
    return quote(path.relative_to(out).as_posix())


def _anchor(case: str) -> str:
    return "case-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in case)


def _cell(value: object) -> tuple[str, bool]:
    """(escaped text, is numeric) of a table value."""
    if isinstance(value, bool) or value is None:
        return html.escape(str(value)), False
    if isinstance(value, (int, float)):
        return (html.escape(f"{value:.4g}") if isinstance(value, float) and math.isfinite(value)
                else html.escape(str(value))), True
    text = str(value)
    try:
        number = float(text)
    except ValueError:
        return html.escape(text), False
    return (html.escape(f"{number:.4g}") if text.strip() and ("." in text or "e" in text.lower()) else
            html.escape(text)), True


def _table(header: list[str], rows: list[list[object]], link_column: Optional[int] = None,
           links: Optional[set[str]] = None) -> str:
    parts = ["<table>", "<tr>" + "".join(f'<th class="text">{html.escape(h)}</th>' for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for n, value in enumerate(row):
            text, numeric = _cell(value)
            if n == link_column and links is not None and str(value) in links:
                text = f'<a href="#{_anchor(str(value))}">{text}</a>'
            cells.append(f"<td>{text}</td>" if numeric else f'<td class="text">{text}</td>')
        parts.append("<tr>" + "".join(cells) + "</tr>")
    parts.append("</table>")
    return "\n".join(parts)


def _flatten(data: object, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(data, dict):
        items = []
        for key, value in data.items():
            items.extend(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return items
    if isinstance(data, list):
        return [(prefix, json.dumps(data))]
    return [(prefix, data)]


_MISSING = object()
# (label, path in summary.json) of the headline table, in order; missing entries are left out
HEADLINE = (("cases", ("n_cases",)), ("fractured cases", ("n_fractured_cases",)),
            ("Dice (pooled voxels)", ("pooled", "dice")), ("precision", ("pooled", "precision")),
            ("recall", ("pooled", "recall")), ("mean Dice per case", ("mean_dice",)),
            ("PR-AUC (pooled voxels)", ("pooled_threshold_free", "pr_auc")),
            ("best F1", ("pooled_threshold_free", "best_threshold", "f1")),
            ("at probability >=", ("pooled_threshold_free", "best_threshold", "threshold")),
            ("case-level detection AUC", ("detection", "case", "roc_auc")),
            ("cases with false positives", ("false_positive_cases",)))


def headline_rows(summary: dict) -> list[list[object]]:
    """``[label, value]`` rows of :data:`HEADLINE` found in an ``evaluate`` summary (None shown as n/a)."""
    rows = []
    for label, path in HEADLINE:
        value: object = summary
        for key in path:
            value = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if value is not _MISSING:
            rows.append([label, "n/a" if value is None else value])
    return rows


def _figure_order(path: Path) -> tuple[int, str]:
    """Views through the maximum first, then through each box, the projections, the 3D view, anything else."""
    for rank, marker in enumerate(("_max.png", "_box", "_mip.png", "_3d.png")):
        if marker in path.name:
            return rank, path.name
    return 4, path.name


def _figure(path: Path, out: Path) -> str:
    href = _href(path, out)
    return (f'<figure><a href="{href}"><img src="{href}" alt="{html.escape(path.name)}" loading="lazy"></a>'
            f"<figcaption>{html.escape(path.relative_to(out).as_posix())}</figcaption></figure>")


def read_metrics(metrics: Path) -> tuple[list[str], list[list[str]], Optional[dict]]:
    """``(header, rows, summary)`` of an ``evaluate`` output folder.

    Raises:
        FileNotFoundError: the folder has neither ``metrics.csv`` nor ``summary.json``.
    """
    metrics = Path(metrics)
    csv_file, summary_file = metrics / "metrics.csv", metrics / "summary.json"
    if not csv_file.is_file() and not summary_file.is_file():
        raise FileNotFoundError(f"{metrics} has no metrics.csv or summary.json. Fix: pass the --out folder of "
                                f"nnunet-fracture evaluate.")
    header: list[str] = []
    rows: list[list[str]] = []
    if csv_file.is_file():
        with open(csv_file, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            rows = [row for row in reader if row]
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    return header, rows, summary


def copy_evaluation(metrics: Path, out: Path) -> list[Path]:
    """Copy an ``evaluate`` folder's tables (``*.csv``, ``*.json``) and figures (``*.png``, ``figures/*.png``)
    into ``OUT/evaluation/``."""
    read_metrics(metrics)  # it must be an evaluation folder
    metrics, target = Path(metrics), Path(out) / EVALUATION_FOLDER
    files = [p for pattern in ("*.csv", "*.json", "*.png", "figures/*.png") for p in sorted(metrics.glob(pattern))]
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, target / f.name)) for f in files if f.is_file()]


def write_report(out: Path, metrics: Optional[Path] = None, title: str = "nnunet-fracture visualize") -> Path:
    """Write ``out/index.html`` (see the module docstring) and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header: list[str] = []
    rows: list[list[str]] = []
    summary = None
    evaluation = out / EVALUATION_FOLDER
    if metrics is not None:
        copy_evaluation(metrics, out)
    if (evaluation / "metrics.csv").is_file() or (evaluation / "summary.json").is_file():
        header, rows, summary = read_metrics(evaluation)

    case_dirs = sorted(p for p in (out / CASES_FOLDER).glob("*") if p.is_dir()) if (out / CASES_FOLDER).is_dir() else []
    case_column = header.index("case") if "case" in header else None
    metric_rows = {row[case_column]: row for row in rows if case_column is not None and len(row) > case_column}
    cases = sorted({p.name for p in case_dirs} | set(metric_rows))
    evaluation_pngs = sorted(evaluation.glob("*.png"))
    case_overlays: dict[str, list[Path]] = {c: [] for c in cases}
    for png in evaluation_pngs:  # per-case evaluation figures are named <case>_<what>.png
        owners = [c for c in cases if png.name.startswith(f"{c}_")]
        if owners:
            case_overlays[max(owners, key=len)].append(png)
    claimed = {p for ps in case_overlays.values() for p in ps}

    body = [f"<h1>{html.escape(title)}</h1>"]
    nav = []
    has_evaluation = evaluation.is_dir() and any(evaluation.iterdir())
    if has_evaluation:
        nav.append('<a href="#evaluation">evaluation</a>')
    nav += [f'<a href="#{_anchor(c)}">{html.escape(c)}</a>' for c in cases]

    sections = []
    if has_evaluation:
        part = ['<h2 id="evaluation">Evaluation</h2>']
        if metrics is not None:
            part.append(f"<p>copied from <code>{html.escape(str(Path(metrics).resolve()))}</code></p>")
        tables = sorted(p for p in evaluation.iterdir() if p.suffix in (".csv", ".json"))
        if tables:
            links = ", ".join(f'<a href="{_href(p, out)}">{html.escape(p.name)}</a>' for p in tables)
            part.append(f"<p>Files: {links}</p>")
        if summary is not None:
            part.append(_table(["headline", "value"], headline_rows(summary)))
        part += [_figure(p, out) for p in evaluation_pngs if p not in claimed]
        if header:
            part.append("<h3>metrics.csv</h3>" + _table(header, rows, case_column, set(cases)))
        if summary is not None:
            part.append("<details><summary>all of summary.json</summary>"
                        + _table(["key", "value"], [list(kv) for kv in _flatten(summary)]) + "</details>")
        sections.append("\n".join(part))

    for case in cases:
        folder = out / CASES_FOLDER / case
        part = [f'<h2 id="{_anchor(case)}">{html.escape(case)}</h2>']
        facts_file = folder / "case.json"
        if facts_file.is_file():
            facts = json.loads(facts_file.read_text())
            boxes = facts.pop("boxes", [])
            facts.pop("files", None)
            part.append(_table(["fact", "value"], [list(kv) for kv in _flatten(facts)]))
            if boxes:
                keys = list(boxes[0])
                part.append(_table(keys, [[b.get(k) for k in keys] for b in boxes]))
        if case in metric_rows:
            part.append(_table(header, [metric_rows[case]]))
        meshes = sorted(p for p in folder.glob("*") if p.suffix.lower() in MESH_SUFFIXES) if folder.is_dir() else []
        if meshes:
            links = ", ".join(f'<a href="{_href(p, out)}">{html.escape(p.name)}</a>' for p in meshes)
            part.append(f"<p>Surfaces for 3D Slicer (world mm, LPS): {links}</p>")
        pngs = sorted(folder.glob("*.png"), key=_figure_order) if folder.is_dir() else []
        part += [_figure(p, out) for p in pngs + case_overlays.get(case, [])]
        sections.append("\n".join(part))

    known = {out / EVALUATION_FOLDER, *(out / CASES_FOLDER / c for c in cases)}
    others: dict[str, list[Path]] = {}
    for png in sorted(out.rglob("*.png")):
        if png.parent in known:
            continue
        group = png.parent.relative_to(out).as_posix() or "."
        others.setdefault(group, []).append(png)
    for group, pngs in sorted(others.items(), key=lambda kv: (kv[0] != TRAINING_BATCH_FOLDER, kv[0])):
        name = "Training batches" if group == TRAINING_BATCH_FOLDER else f"Figures in {group}"
        anchor = "group-" + "".join(c if c.isalnum() else "_" for c in group)
        nav.append(f'<a href="#{anchor}">{html.escape(name.lower())}</a>')
        sections.append(f'<h2 id="{anchor}">{html.escape(name)}</h2>\n' + "\n".join(_figure(p, out) for p in pngs))

    if nav:
        body.append("<nav>" + " ".join(nav) + "</nav>")
    if not sections:
        body.append("<p>No figures in this folder yet.</p>")
    body += sections
    page = ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
