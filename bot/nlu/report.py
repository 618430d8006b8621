"""The report directory of ``receptionist nlu test``.

report.json            every number below, machine-readable
summary.txt            the short summary that is also printed
intents.md             per-intent precision/recall/F1 and the averages
misclassified.md/.json the examples the model got wrong
thresholds.md          in-scope macro-F1 and out-of-scope P/R per fallback threshold
confusion_matrix.png   expected vs predicted intents (matplotlib, in the Rasa venv)
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bot.nlu.evaluate import Report

PLOT = r"""
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
rows = sorted(data)
cols = sorted({c for r in data.values() for c in r} | set(rows))
m = [[data[r].get(c, 0) for c in cols] for r in rows]
fig, ax = plt.subplots(figsize=(max(8, len(cols) * 0.42), max(6, len(rows) * 0.38)))
im = ax.imshow(m, cmap="Blues")
ax.set_xticks(range(len(cols)))
ax.set_xticklabels(cols, rotation=90, fontsize=7)
ax.set_yticks(range(len(rows)))
ax.set_yticklabels(rows, fontsize=7)
ax.set_xlabel("predicted")
ax.set_ylabel("expected")
for i, row in enumerate(m):
    for j, v in enumerate(row):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6,
                    color="white" if v > max(max(r) for r in m) / 2 else "black")
ax.set_title("Intent confusion matrix (held-out test set)")
fig.colorbar(im, ax=ax, fraction=0.03)
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"""


def _table(report: Report) -> str:
    lines = [
        "| intent | precision | recall | F1 | support |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in sorted(report.per_intent.items()):
        lines.append(f"| {name} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} |")
    lines += [
        "",
        f"- macro average (in scope): precision {report.macro_precision:.3f}, recall "
        f"{report.macro_recall:.3f}, F1 {report.macro_f1:.3f}",
        f"- weighted F1 (in scope): {report.weighted_f1:.3f}",
        f"- accuracy (all examples): {report.accuracy:.3f}",
        f"- out of scope / fallback: precision {report.oos.precision:.3f}, recall "
        f"{report.oos.recall:.3f}, F1 {report.oos.f1:.3f} ({report.oos.support} examples)",
        f"- in-scope examples that fell back: {report.in_scope_fallback_rate:.3f}",
        f"- FAQ response selector: {report.faq_selector_accuracy:.3f} when the intent was faq, "
        f"{report.faq_end_to_end_accuracy:.3f} end to end ({report.faq_examples} examples)",
    ]
    return "\n".join(lines) + "\n"


def _misclassified_md(report: Report) -> str:
    lines = ["| text | expected | predicted | confidence | where |", "|---|---|---|---:|---|"]
    for m in report.misclassified:
        lines.append(
            f"| {m['text']} | {m['expected']} | {m['predicted']} | {m['confidence']:.3f} "
            f"| {m['where']} |"
        )
    return "\n".join(lines) + "\n"


def _thresholds_md(report: Report) -> str:
    lines = [
        f"Shipped: threshold {report.fallback_threshold}, ambiguity {report.ambiguity_threshold}",
        "",
        "| threshold | ambiguity | in-scope macro-F1 | OOS precision | OOS recall | "
        "in-scope fallback rate |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.thresholds:
        lines.append(
            f"| {r['threshold']:.2f} | {r['ambiguity_threshold']:.2f} | {r['macro_f1']:.3f} "
            f"| {r['oos_precision']:.3f} | {r['oos_recall']:.3f} "
            f"| {r['in_scope_fallback_rate']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    report: Report, out: Path, *, rasa_python: Path, extra: dict[str, Any] | None = None
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data = report.as_json()
    data.update(extra or {})
    (out / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / "summary.txt").write_text(report.summary() + "\n")
    (out / "intents.md").write_text(_table(report))
    (out / "misclassified.md").write_text(_misclassified_md(report))
    (out / "misclassified.json").write_text(json.dumps(report.misclassified, indent=2) + "\n")
    (out / "thresholds.md").write_text(_thresholds_md(report))
    confusion = out / "confusion.json"
    confusion.write_text(json.dumps(report.confusion))
    proc = subprocess.run(
        [str(rasa_python), "-c", PLOT, str(confusion), str(out / "confusion_matrix.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"plotting the confusion matrix failed: {proc.stderr[-1000:]}")
    return out
