"""The evaluation report: one self-contained HTML page (images linked relative to it, so the folder can move).

`write_report(path, ...)` renders: the verdict (BLESSED / NOT_BLESSED and why), the metrics table (with the
baseline's value where there is one), notes (which feature network, whether numbers compare with papers), and
per direction a table of labelled image rows (inputs, translations, cycles, MUNIT style rows, U-GAT-IT
attention heatmaps). No JavaScript, no external resources.
"""

from __future__ import annotations

import html
import os


def _number(value) -> str:
  if isinstance(value, float):
    return f"{value:.6g}"
  return html.escape(str(value))


def write_report(path: str, *, title: str, blessed: bool, reason: str, metrics: dict, baseline: dict | None,
                 notes: list, sections: list) -> str:
  """Writes the HTML report; returns `path`.

  Args:
    path: output file (e.g. <output_dir>/report.html).
    title: page heading.
    blessed, reason: the evaluation verdict.
    metrics: metric name -> number.
    baseline: metric name -> the baseline model's number (or None when there was no baseline).
    notes: sentences shown under the table.
    sections: list of (heading, [(row label, image path relative to `path`'s directory)]).
  """
  baseline = baseline or {}
  rows = "\n".join(
      f"<tr><td>{html.escape(name)}</td><td>{_number(value)}</td>"
      f"<td>{_number(baseline[name]) if name in baseline else ''}</td></tr>" for name, value in metrics.items())
  parts = [
      "<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
      "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
      "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{image-rendering:pixelated;height:96px}"
      ".ok{color:#070}.bad{color:#a00}</style></head><body>",
      f"<h1>{html.escape(title)}</h1>",
      f"<p class='{'ok' if blessed else 'bad'}'><b>{'BLESSED' if blessed else 'NOT_BLESSED'}</b>: "
      f"{html.escape(reason)}</p>",
      "<h2>Metrics</h2><table><tr><th>metric</th><th>model</th><th>baseline</th></tr>", rows, "</table>",
      "<ul>", *[f"<li>{html.escape(note)}</li>" for note in notes], "</ul>",
  ]
  for heading, images in sections:
    parts.append(f"<h2>{html.escape(heading)}</h2><table>")
    parts.extend(f"<tr><th>{html.escape(label)}</th><td><img src='{html.escape(src)}' alt='{html.escape(label)}'>"
                 f"</td></tr>" for label, src in images)
    parts.append("</table>")
  parts.append("</body></html>")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(parts) + "\n")
  return path
