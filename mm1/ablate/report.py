"""Rebuild an ablation's outputs from its run folders: results.csv, summary.md, findings.json, PNG plots,
the lr law.

Used at the end of every sweep and by `mm1 ablate --report DIR` (no training).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mm1.ablate.effects import add_intervals, axis_effects
from mm1.ablate.findings import FindingResult, evaluate_findings, write_findings
from mm1.ablate.lrfit import MM1_LAW, LrFit, fit_lr_law, format_fit
from mm1.ablate.plots import plot_grid, plot_lr_fit
from mm1.ablate.queries import load_scores
from mm1.ablate.results import aggregate, collect, columns_of, write_csv
from mm1.ablate.summary import summary_markdown


@dataclass
class Report:
    out: Path
    rows: list[dict]
    files: list[Path] = field(default_factory=list)
    lr_fit: LrFit | None = None
    lr_fit_error: str | None = None
    summary: str = ""
    findings: list[FindingResult] = field(default_factory=list)


def _lr_section(plan: dict, rows: list[dict], out: Path, report: Report) -> str:
    spec = plan["grid"].get("lr_fit")
    if not spec:
        return ""
    try:
        report.lr_fit = fit_lr_law(rows, spec["size_axis"], spec["select"])
    except ValueError as err:
        report.lr_fit_error = str(err)
        return f"## Learning-rate law\n\nNo fit: {err}\n"
    report.files.append(plot_lr_fit(report.lr_fit.points, report.lr_fit.a, report.lr_fit.b, out / "lr_law.png",
                                    reference=MM1_LAW))
    return "## Learning-rate law\n\n" + format_fit(report.lr_fit) + "\n![lr law](lr_law.png)\n"


def build_report(out: Path | str) -> Report:
    out = Path(out)
    plan, rows = collect(out)
    report = Report(out, rows)
    write_csv(rows, columns_of(plan), out / "results.csv")
    report.files.append(out / "results.csv")
    scores = load_scores(out, plan, rows)
    cells = aggregate(rows, columns_of(plan))
    add_intervals(plan, scores, cells)
    report.findings = evaluate_findings(plan, scores)
    if report.findings:
        report.files.append(write_findings(report.findings, out / "findings.json"))
    extra = _lr_section(plan, rows, out, report)
    if plan["grid"].get("plot") and cells:
        name = f"{plan['grid']['name']}.png"
        report.files.append(plot_grid(plan, scores, cells, out / name))
        extra = f"![{plan['grid']['name']}]({name})\n\n" + extra
    report.summary = summary_markdown(plan, rows, cells, axis_effects(plan, scores), report.findings,
                                      scores.seeds_only, extra)
    (out / "summary.md").write_text(report.summary)
    report.files.append(out / "summary.md")
    return report
