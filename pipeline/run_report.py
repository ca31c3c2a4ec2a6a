"""The run report: one self-contained HTML file of what the pipeline did.

Rendered from pipeline/run_history.py's records; the pictures are embedded
as data URLs and the style is inline, so the file opens anywhere, offline,
and can be mailed or attached to a ticket. Newest first, and only the newest
run (model, evaluation) unfolded, so a long history stays readable. Every
section and row has a stable id or class for tools that read the page.
"""
from __future__ import annotations

import base64
import collections
import datetime
import html
import pathlib
import re
import tempfile

from facealign.core import model_card
from facealign.core.config import Config
from pipeline import run_history
from pipeline.run_history import RunHistory

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
summary { cursor: pointer; font-weight: 600; }
details { margin: 0.4em 0; padding: 0.3em 0.6em; border-left: 3px solid #ddd; }
.complete { color: #1a6e1a; } .cached { color: #555; } .failed, .missing { color: #b00020; }
.running { color: #a06000; } .blessed { color: #1a6e1a; } .not-blessed { color: #b00020; }
.drifted td { color: #b00020; font-weight: bold; }
.version.serving { font-weight: 700; background: #eef7ee; }
img { max-width: 100%; }
"""


def build_report(cfg: Config) -> str:
    """The report of cfg's pipeline root; MetadataStoreError when it has no runs."""
    return render(run_history.read_history(cfg))


def write_report(cfg: Config, out) -> pathlib.Path:
    path = pathlib.Path(out)
    text = build_report(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def render(history: RunHistory) -> str:
    e = html.escape
    generated = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    sections = [("runs", "Runs", runs_section), ("data", "Data", data_section),
                ("models", "Models", models_section),
                ("evaluations", "Evaluations", evaluations_section),
                ("versions", "Pushed versions", versions_section),
                ("sweeps", "Sweeps", sweeps_section)]
    nav = " · ".join(f'<a href="#{key}">{title}</a>' for key, title, _ in sections)
    body = "\n".join(f'<section id="{key}"><h2>{title}</h2>\n{render_section(history)}</section>'
                     for key, title, render_section in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<title>{e(history.pipeline)}: run report</title><style>{STYLE}</style></head>'
            f'<body>\n<h1>Pipeline {e(history.pipeline)}: run report</h1>\n'
            f'<p>{len(history.runs)} runs recorded in {e(history.store)}; '
            f'generated {generated}.</p>\n<nav>{nav}</nav>\n{body}\n</body></html>\n')


def when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M:%S")


def folded(items, css_class: str, summary, body) -> str:
    """One <details> per item, the first (newest) open."""
    return "\n".join(
        f'<details class="{css_class}"{" open" if i == 0 else ""}>'
        f"<summary>{summary(item)}</summary>\n{body(item)}</details>"
        for i, item in enumerate(items))


def table(header: list[str], rows: list[list], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    lines = []
    for i, row in enumerate(rows):
        css = f' class="{row_classes[i]}"' if row_classes else ""
        cells = "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row)
        lines.append(f"<tr{css}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(lines)}</table>"


def missing(why: str) -> str:
    return f'<p class="missing">missing: {html.escape(why)}</p>'


def png_data_url(path) -> str:
    return "data:image/png;base64," + base64.b64encode(pathlib.Path(path).read_bytes()).decode()


def runs_section(history: RunHistory) -> str:
    def summary(run):
        counts = collections.Counter(x.state for x in run.executions)
        ended = max((x.started + x.seconds for x in run.executions), default=run.started)
        states = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        return html.escape(f"{run.name} (started {when(run.started)}): {states}; "
                           f"{ended - run.started:.0f} s")

    def body(run):
        return table(["node", "state", "started", "seconds"],
                     [[x.node, x.state, when(x.started), f"{x.seconds:.1f}"]
                      for x in run.executions],
                     [f"execution {x.state}" for x in run.executions])
    return folded(history.runs, "run", summary, body)


def data_section(history: RunHistory) -> str:
    if not history.data:
        return missing("no LandmarkExampleGen output recorded")

    def summary(data):
        span = f"span {data.span}: " if data.span else ""
        return html.escape(f"run {data.run}: {span}{data.accepted} faces accepted, "
                           f"{data.rejected} inputs rejected")

    def body(data):
        parts = [f'<p>Faces accepted: <span class="accepted">{data.accepted}</span>; inputs '
                 f'rejected: <span class="rejected">{data.rejected}</span>; per split: '
                 f'{html.escape(", ".join(f"{k} {v}" for k, v in data.per_split.items()))}'
                 f'</p>']
        if data.fingerprint:
            version = "" if data.version is None else f", version {data.version}"
            parts.append(f'<p class="span">span {data.span}{version}; source files '
                         f'<code>{html.escape(data.fingerprint)}</code></p>')
        if data.missing:
            parts.append(missing(data.missing))
        if data.rejects:
            parts.append(table(["file", "dataset", "reason"],
                               [[r.get("file"), r.get("dataset"), r.get("reason")]
                                for r in data.rejects]))
        parts.append("<h3>Data validation (TFDV)</h3>")
        if data.anomalies is None:
            parts.append(missing("no ExampleValidator anomalies for this run"))
        elif not data.anomalies:
            parts.append('<p class="anomalies none">no anomalies</p>')
        else:
            parts.append('<ul class="anomalies">' + "".join(
                f"<li>{html.escape(line)}</li>" for line in data.anomalies) + "</ul>")
        if data.drift is not None:
            parts.append(drift_part(data.drift))
        return "\n".join(parts)
    return folded(history.data, "data", summary, body)


def drift_part(report: dict) -> str:
    """DriftCheck's figures: each feature's divergence from the previous span, both values."""
    if report.get("previous_span") is None:
        return f'<h3>Drift</h3><p class="drift none">span {report.get("span")} is the first</p>'
    verdict = ("drifted: " + ", ".join(report["drifted"]) +
               (" (accepted)" if report.get("accept_drift") else "")
               if report.get("drifted") else "within every threshold")
    rows = [[r["feature"], r["comparator"], number(r["value"]), number(r["threshold"]),
             r["previous"], r["current"]] for r in report.get("features", [])]
    return (f'<h3>Drift</h3><p class="drift">span {report["span"]} against span '
            f'{report["previous_span"]}: {html.escape(verdict)}</p>'
            + table(["feature", "measure", "value", "threshold",
                     f"span {report['previous_span']}", f"span {report['span']}"], rows,
                    ["drifted" if r["drifted"] else "" for r in report.get("features", [])]))


def with_code(text: str) -> str:
    """Escaped text with markdown's `code` spans as <code> (model_card writes markdown)."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def models_section(history: RunHistory) -> str:
    if not history.models:
        return missing("no Trainer model recorded")

    def summary(model):
        lineage = (model.metadata or {}).get("lineage") or {}
        generation = f", generation {lineage['generation']}" if lineage else ""
        return html.escape(f"model {model.artifact_id} of run {model.run}{generation}")

    def body(model):
        if model.metadata is None:
            return missing(model.missing or model.uri)
        metadata = model.metadata
        lines = model_card.lineage_lines(metadata) or ["- Lineage: not recorded."]
        per_stage = metadata.get("validation_nme_inter_pupil_per_stage") or []
        stages = ", ".join("n/a" if v is None else f"{100 * v:.2f}%" for v in per_stage)
        parts = [f"<p>{html.escape(str(metadata.get('model', '?')).upper())} at "
                 f"<code>{html.escape(model.uri)}</code>; validation NME (inter-pupil) per "
                 f"stage: {html.escape(stages or 'not recorded')}.</p>",
                 '<ul class="lineage">' + "".join(f"<li>{with_code(line[2:])}</li>"
                                                  for line in lines) + "</ul>"]
        with tempfile.TemporaryDirectory() as scratch:
            curve = pathlib.Path(scratch) / "curve.png"
            if model_card.training_curve_png(metadata, curve):
                parts.append(f'<img class="curve" alt="validation curve" '
                             f'src="{png_data_url(curve)}">')
            else:
                parts.append("<p>no validation curve recorded</p>")
        return "\n".join(parts)
    return folded(history.models, "model", summary, body)


# A blessing's state (None: none recorded) as the page's class and words
BLESSING_CLASS = {True: "blessed", False: "not-blessed", None: "missing"}
VERDICT = {True: "BLESSED", False: "NOT blessed", None: "no blessing recorded"}


def evaluations_section(history: RunHistory) -> str:
    if not history.evaluations:
        return missing("no Evaluator output recorded")

    def summary(evaluation):
        return html.escape(f"run {evaluation.run}: {VERDICT[evaluation.blessed]}: "
                           f"{evaluation.reason}")

    def body(evaluation):
        parts = [f'<p class="blessing {BLESSING_CLASS[evaluation.blessed]}">'
                 f'{VERDICT[evaluation.blessed]}: '
                 f'<span class="reason">{html.escape(evaluation.reason)}</span></p>',
                 f"<p>candidate <code>{html.escape(evaluation.model_uri or '?')}</code>"
                 + (f", baseline <code>{html.escape(evaluation.baseline_uri)}</code>"
                    if evaluation.baseline_uri else ", no baseline") + "</p>"]
        if evaluation.report is None:
            parts.append(missing(evaluation.missing or "metrics.json"))
        else:
            parts.append(metrics_table(evaluation.report))
        if evaluation.face_errors is not None and evaluation.face_errors["baseline"] is not None:
            parts.append(changed_faces_table(evaluation.face_errors))
        if evaluation.ced_png is not None:
            parts.append(f'<img class="ced" alt="CED" src="{png_data_url(evaluation.ced_png)}">')
        else:
            parts.append(missing("ced.png"))
        return "\n".join(parts)
    return folded(history.evaluations, "evaluation", summary, body)


def changed_faces_table(errors: dict, count: int = 5) -> str:
    """The faces the candidate changed most against the baseline (the Evaluator's per-face
    errors): where a paired difference comes from."""
    change = errors["candidate"] - errors["baseline"]
    order = sorted(range(len(change)), key=lambda i: -abs(change[i]))[:count]
    rows = [[html.escape(errors["face_id"][i]), html.escape(errors["subset"][i]),
             number(errors["baseline"][i]), number(errors["candidate"][i]),
             f"{change[i]:+.3f}"] for i in order]
    return (f"<p>The {len(order)} faces that changed most, of {len(change)} "
            "(per-face NME, %):</p>" + table(["face", "subset", "baseline", "candidate",
                                              "change"], rows))


def metrics_table(report: dict) -> str:
    """Each subset's figures, the candidate's row beside the baseline's."""
    candidate = report.get("metrics") or {}
    baseline = (report.get("baseline") or {}).get("metrics") or {}
    keys = list(dict.fromkeys(k for figures in candidate.values() for k in figures))
    rows, classes = [], []
    for subset, figures in candidate.items():
        for model, source in (("candidate", figures), ("baseline", baseline.get(subset))):
            if source is None:
                continue
            rows.append([subset, model, *[number(source.get(k)) for k in keys]])
            classes.append(f"metrics {model}")
    return table(["subset", "model", *keys], rows, classes)


def number(value) -> str:
    """Four significant digits: a learning rate of 3e-4 must not read 0.000."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def versions_section(history: RunHistory) -> str:
    serving = history.serving
    current = serving.current
    rows, classes, pushed_versions = [], [], set()
    for push in history.pushes:
        is_serving = current is not None and push.pushed and push.version == str(current)
        pushed_versions.add(push.version)
        rows.append([push.version or "-", push.run, "pushed" if push.pushed else "not pushed",
                     push.destination or "-",
                     "serving now" if is_serving else
                     ("in the folder" if push.version and push.version.isdigit()
                      and int(push.version) in serving.versions else "gone")])
        classes.append("version serving" if is_serving else "version")
    for version in sorted(serving.versions, reverse=True):    # pushed outside this pipeline
        if str(version) not in pushed_versions:
            rows.append([version, "-", "not from this pipeline's pushes",
                         str(serving.base / str(version)),
                         "serving now" if version == current else "in the folder"])
            classes.append("version serving" if version == current else "version")
    now = (f"version {current} (newest of {len(serving.versions)} in the folder)"
           if current is not None else "nothing (no numeric version folder)")
    return (f"<p>Serving folder <code>{html.escape(str(serving.base))}</code> serves "
            f'<span class="serving-now">{html.escape(now)}</span>.</p>\n'
            + (table(["version", "run", "push", "destination", "serving"], rows, classes)
               if rows else "<p>no pushes recorded</p>"))


def sweeps_section(history: RunHistory) -> str:
    if not history.sweeps:
        return '<p class="sweep none">no sweep</p>'
    return "\n".join(
        f'<div class="sweep"><h3>{html.escape(sweep.source)}</h3>'
        + (table(sweep.columns, [[number(row.get(c)) for c in sweep.columns]
                                 for row in sweep.rows]) if sweep.rows else missing("no trials"))
        + "</div>" for sweep in history.sweeps)
