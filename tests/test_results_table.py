"""The generated results blocks: written between their markers from reports/, and in step with the committed docs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.results_table import (
    ANCHORS,
    by_name,
    experiments_section,
    left_out_result,
    main,
    markers,
    shipped_models_section,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORTS = REPO_ROOT / "reports"


def marked(name: str, around: str = "hand-written") -> str:
    start, end = markers(name)
    return f"# Title\n\n{around} before\n\n{start}\nstale table\n{end}\n\n{around} after\n"


def test_write_fills_both_blocks_from_the_reports_and_keeps_the_rest(tmp_path: Path) -> None:
    readme, experiments = tmp_path / "README.md", tmp_path / "experiments.md"
    readme.write_text(marked("results"))
    experiments.write_text(marked("experiments"))
    main(["--reports", str(REPORTS), "--write", "--readme", str(readme), "--experiments", str(experiments)])

    text = readme.read_text()
    assert "stale table" not in text and "hand-written before" in text and "hand-written after" in text
    for report_name in ("test_neutral.json", "test_neutral_unseen_by_all.json"):
        for name, report in by_name(json.loads((REPORTS / report_name).read_text())).items():
            assert f"| {name} | neutral re-encoding | {report['n']} | {report['threshold']:.3f} |" in text
    assert all(f"| *{label}* |" in text for label, _ in ANCHORS)
    audit = json.loads((REPORTS / "shortcut_audit.json").read_text())
    assert f"{audit['matched_neutral']['balanced_accuracy']:.3f}" in text

    rows = json.loads((REPORTS / "leave_one_out.json").read_text())
    text = experiments.read_text()
    assert "stale table" not in text and "hand-written after" in text
    assert all(f"| {row['left_out']} |" in text for row in rows)
    assert "Leave one out" not in readme.read_text()


def test_missing_markers_write_nothing(tmp_path: Path) -> None:
    readme, experiments = tmp_path / "README.md", tmp_path / "experiments.md"
    readme.write_text(marked("results"))
    experiments.write_text("# no markers here\n")
    with pytest.raises(SystemExit, match="experiments.md: no <!-- experiments:start -->"):
        main(["--reports", str(REPORTS), "--write", "--readme", str(readme), "--experiments", str(experiments)])
    assert readme.read_text() == marked("results")  # the file checked first is not half-updated


def test_the_committed_docs_show_the_committed_reports() -> None:
    """README.md and docs/experiments.md were regenerated after the last change to reports/."""
    assert shipped_models_section(REPORTS) in (REPO_ROOT / "README.md").read_text()
    assert experiments_section(REPORTS) in (REPO_ROOT / "docs" / "experiments.md").read_text()


@pytest.mark.parametrize(("left_out", "kind"), [("diffusion_era", "generators"), ("sd15_lora_portraits", "generators"),
                                                ("stylegan", "generators"), ("generator=sdxl", "generators"),
                                                ("tv_stills", "real source"), ("rees451_lfw", "real source")])
def test_left_out_groups_are_recorded_by_the_class_they_left_out(left_out: str, kind: str) -> None:
    """Today's fake groups are generators, each new real collection a real source: the recall reported is theirs."""
    row = {"left_out": left_out, "unseen_n_fake": 5, "unseen_roc_auc": 0.9, "unseen_balanced_accuracy": 0.8,
           "unseen_fake_recall": 0.7, "real_recall": 0.95}
    result = left_out_result(row)
    assert result["kind"] == kind and result["recall"] == (0.7 if kind == "generators" else 0.95)
