"""Copies the newest pushed version of a pipeline run into pretrained/ with a MODEL_CARD.md.

The card is written from what the run recorded, not typed by hand (plus an
optional --note): the model's metadata (configuration, per-stage validation NME, training time,
how each stage ended), the Evaluator's metrics.json for that model (the
held-out faces, per subset) and the Augment artifact's canonical frame (how
many faces and samples it trained on). The copy's metadata gets the
evaluation, as the Pusher writes it, and the CED plot goes beside the card.

Versions pushed before the exporter stored each weight once (Keras'
ExportArchive wrote every weight twice, ~178 MB for the 2-stage DAN) are
re-saved with their own signatures and each weight once, and the copy is
checked to answer exactly as the original; versions without real warmup
requests get the run's first held-out faces (trainer.run.warmup_faces).

Publishing replaces the folder's version (every clone pays for each published model
in git history), and only when the new model's held-out NME, measured here through the
serving signature on the run's held-out faces, is at least --min-improvement (relative)
better than the published model's on the same faces. The card shows the training curve
(`training_curve.png`: validation NME against samples trained on since the first
warm-started ancestor), the lineage and the CPU the model was trained on.

  python pretrained/publish.py --config configs/300w.yaml --out pretrained/dan-300w
  python pretrained/publish.py --config configs/300w.yaml --remeasure pretrained/aan-300w

--remeasure scores a published model in place through the serving signature on the
run's held-out faces and rewrites its card's evaluation table and metadata.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.atomic_pusher.executor import (  # noqa: E402
    add_evaluation,
    measured_batching_parameters,
)
from facealign.core import config as config_lib  # noqa: E402
from facealign.core import metrics as metrics_lib  # noqa: E402
from facealign.core import model_format  # noqa: E402
from facealign.core.model_format import (  # noqa: E402
    PREDICT_CANONICAL,
    SERVING_DEFAULT,
    TF_EXAMPLE,
    ModelMetadata,
)

EVALUATION_HEADING = "## Evaluation"
TRANSLATION_UNITS = {"face": "face's width and height",
                     "frame_pixels": "canonical S0's width in original pixels, as the official "
                                     "code"}
HEADLINE = ("nme_inter_ocular", "nme_inter_pupil", "nme_box_diagonal", "auc_0.08",
            "failure_rate_0.08")


def newest_version(base: pathlib.Path) -> pathlib.Path:
    versions = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise SystemExit(f"no pushed version under {base}")
    return versions[-1]


def evaluation_of(root: pathlib.Path, metadata: dict) -> tuple[dict, pathlib.Path]:
    """The Evaluator report (and its folder) of the Trainer model this version was copied from:
    the one whose metadata is this version's (less the evaluation the Pusher added)."""
    mine = {k: v for k, v in metadata.items() if k != "evaluation"}
    for report_path in sorted(root.glob("LandmarkEvaluator/evaluation/*/metrics.json"),
                              key=lambda p: -int(p.parent.name)):
        report = json.loads(report_path.read_text())
        source = pathlib.Path(report["model"]) / "Format-Serving"
        if model_format.has_metadata(source) and ModelMetadata.read(source).to_dict() == mine:
            return report, report_path.parent
    raise SystemExit(f"no Evaluator report under {root} for this model")


def compact_copy(src: pathlib.Path, dst: pathlib.Path) -> bool:
    """Copies a SavedModel, re-saving it when its checkpoint holds weights twice; True if so."""
    import numpy as np
    import tensorflow as tf

    loaded = tf.saved_model.load(str(src))
    signatures = {name: loaded.signatures[name] for name in loaded.signatures}
    weights = list({id(v): v for fn in signatures.values() for v in fn.variables}.values())
    weight_bytes = sum(int(np.prod(v.shape)) * v.dtype.size for v in weights)
    stored = sum(p.stat().st_size for p in (src / "variables").iterdir())
    if stored < 1.5 * weight_bytes:
        shutil.copytree(src, dst)
        return False
    module = tf.Module()
    module.weights_store = weights
    tf.saved_model.save(module, str(dst), signatures=signatures)
    shutil.copytree(src / model_format.EXTRA_DIR, dst / model_format.EXTRA_DIR)
    again = tf.saved_model.load(str(dst))
    crops = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 112, 112, 1), np.uint8))
    for name in ("landmarks", "stage_spread"):
        a = loaded.signatures[PREDICT_CANONICAL](image=crops)[name].numpy()
        b = again.signatures[PREDICT_CANONICAL](image=crops)[name].numpy()
        if not np.array_equal(a, b):
            raise SystemExit(f"the re-saved model answers differently ({name})")
    return True


def reexport(src: pathlib.Path, dst: pathlib.Path, root: pathlib.Path,
             flip_average: bool | None = None) -> float:
    """Exports a pushed model again with this checkout's exporter; its largest landmark change.

    A model trained by an older checkout gets the current serving graph (the
    in-graph input checks and landmark_spread), its weights and metadata
    unchanged; the change is measured through serving_default on the run's
    held-out faces (the warmup requests) and is bfloat16 noise at most, unless
    flip_average (not None) switches test-time flip averaging on or off.
    """
    import numpy as np
    import tensorflow as tf

    from trainer import run, warm_start

    splits = sorted(root.glob("Augment/canonical_examples/*/Split-eval"),
                    key=lambda p: int(p.parent.name))
    faces = run.warmup_faces([str(splits[-1] / "*")]) if splits else None
    warm_start.export_again(src, str(dst), faces, flip_average=flip_average)
    old, new = tf.saved_model.load(str(src)), tf.saved_model.load(str(dst))
    change = 0.0
    for request in model_format.read_warmup_requests(dst):
        inputs = {name: tf.make_ndarray(tensor) for name, tensor in request.inputs.items()}
        a = old.signatures[SERVING_DEFAULT](**inputs)["landmarks"].numpy()
        b = new.signatures[SERVING_DEFAULT](**inputs)["landmarks"].numpy()
        change = max(change, float(np.abs(a - b).max()))
    return change


def ensure_real_warmup(root: pathlib.Path, model_dir: pathlib.Path) -> int:
    """Real held-out faces as warmup requests where the version has none; their count."""
    from trainer import export, run

    metadata = ModelMetadata.read(model_dir)
    if (metadata.warmup_requests or 0) > 1:      # written from real faces already
        return metadata.warmup_requests
    splits = sorted(root.glob("Augment/canonical_examples/*/Split-eval"),
                    key=lambda p: int(p.parent.name))
    if not splits:
        raise SystemExit(f"{model_dir} has no real warmup requests and {root} has no Augment "
                         "eval split to write them from")
    count = model_format.write_warmup_requests(
        model_dir, export.warmup_requests(run.warmup_faces([str(splits[-1] / "*")])))
    metadata.updated(warmup_requests=count).write(model_dir)
    return count


def held_out_examples(root: pathlib.Path) -> list[str]:
    """The run's held-out raw faces (LandmarkExampleGen's newest eval split): what the Evaluator
    scores."""
    splits = sorted(root.glob("LandmarkExampleGen/examples/*/Split-eval"),
                    key=lambda p: int(p.parent.name))
    if not splits:
        raise SystemExit(f"{root} has no LandmarkExampleGen eval split: run the pipeline first")
    return sorted(str(p) for p in splits[-1].glob("*"))


def measure(model_dir: pathlib.Path, files: list[str], threshold: float) -> dict:
    """{"all": summary, subset: summary}: the model through its serving signature on the faces."""
    return measure_with_errors(model_dir, files, threshold)[0]


def measure_with_errors(model_dir: pathlib.Path, files: list[str], threshold: float):
    """(measure's figures, the per-face errors a CED plots)."""
    from components.landmark_evaluator import evaluation

    predictions = evaluation.predict(str(model_dir), evaluation.read_examples(files))
    return evaluation.score(predictions, threshold), evaluation.headline_errors(predictions)


def headline(metrics: dict) -> float:
    """The Evaluator's headline NME (its blessing figure) of a report's faces."""
    return metrics_lib.headline_nme(metrics["all"])


def curve_png(metadata: dict, path: pathlib.Path) -> bool:
    """training_curve.png: validation NME per epoch against cumulative samples; False if
    unrecorded."""
    curve = metadata.get("validation_curve")
    if not curve:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = "nme_inter_ocular" if all(p.get("nme_inter_ocular") is not None for p in curve) \
        else "nme_inter_pupil"
    fig, ax = plt.subplots(figsize=(7, 4))
    for stage in sorted({p["stage"] for p in curve}):
        points = [p for p in curve if p["stage"] == stage]
        ax.plot([p["samples"] / 1e3 for p in points], [100 * p[key] for p in points], "o-",
                markersize=3, label=f"stage {stage}")
    ax.set_xlabel("samples trained on, cumulative over warm-started generations (thousands)")
    ax.set_ylabel(f"validation NME, {key[4:].replace('_', '-')} (%)")
    ax.set_title(f"{metadata.get('model', 'model').upper()}: held-out NME during training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def lineage_lines(metadata: dict) -> list[str]:
    lineage = metadata.get("lineage")
    if not lineage:
        return []
    parent = lineage.get("parent")
    parent = "/".join(pathlib.Path(parent).parts[-2:]) if parent else None   # base/version
    exported = lineage.get("parent_exported_at")
    return [
        f"- Lineage: generation {lineage['generation']}"
        + (f", warm-started from version `{parent}`"
           + (f" (exported {exported})" if exported else "") if parent
           else ", trained from random weights") + ".",
        f"- Cumulative training over the generations: {lineage['cumulative_steps']:,} steps, "
        f"{lineage['cumulative_samples']:,} samples, "
        f"{lineage['cumulative_seconds'] / 3600:.2f} hours.",
        f"- Trained on: {metadata.get('precision_reason', 'not recorded')} "
        f"(precision {metadata.get('precision', '?')}).",
    ]


def evaluation_table(metrics: dict) -> list[str]:
    lines = ["| subset | faces | NME inter-ocular | NME inter-pupil | NME box diagonal | "
             "AUC@0.08 | failure@0.08 |", "|---|---|---|---|---|---|---|"]
    for subset, figures in metrics.items():
        lines.append(f"| {subset} | {figures['count']} | {figures['nme_inter_ocular']:.2f}% | "
                     f"{figures['nme_inter_pupil']:.2f}% | {figures['nme_box_diagonal']:.2f}% | "
                     f"{figures['auc_0.08']:.3f} | {figures['failure_rate_0.08']:.1f}% |")
    return lines


def frame_of(root: pathlib.Path) -> dict:
    frames = sorted(root.glob("Augment/canonical_frame/*/canonical_frame.json"),
                    key=lambda p: int(p.parent.name))
    return json.loads(frames[-1].read_text()) if frames else {}


def size_mb(folder: pathlib.Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def aan_lines(aan: dict) -> list[str]:
    """The AAN's choices that its metadata records and the DAN's card has no place for."""
    widths = "/".join(str(aan["base_filters"] * 2 ** k) for k in range(4))
    units = aan.get("units_per_block")
    low, high = aan["lr_boundaries"]
    # models trained before the stem, the units per block and the coupled L2 (issue #14)
    # recorded none of them and used AdamW
    stem = f"a 7x7 stem, {'/'.join(map(str, units))} units per block, " if units else ""
    optimizer = ("Adam with an L2 weight decay" if units else "AdamW, weight decay")
    return [
        f"- Network: {stem}bottleneck widths {widths}, attention "
        f"{'on' if aan['attention'] else 'off (ablation)'}, {aan['embedding']} embedding of "
        f"d = {aan['embedding_dim']}, intermediate supervision "
        f"{'on (the heads are not exported)' if aan['intermediate_supervision'] else 'off'}.",
        f"- {optimizer} {aan['weight_decay']:g}; learning rate /10 after {low} and "
        f"/100 after {high} steps; loss: {aan['normalization']}-normalised NME summed over "
        "the outputs.",
    ]


def card(name: str, version: pathlib.Path, metadata: dict, report: dict, frame: dict,
         config_path: str, provenance: str, note: str = "") -> str:
    cfg = metadata["config"]
    model = cfg["model"]["name"]
    per_stage = metadata["validation_nme_inter_pupil_per_stage"]
    per_stage_io = metadata.get("validation_nme_inter_ocular_per_stage")
    title = ('Deep Alignment Network (Kowalski et al. 2017), ' + str(metadata['stages']) + ' stages'
             if model == 'dan' else 'Attentional Alignment Network (Yue et al. 2018)')
    lines = [
        f"# {name}", "",
        f"{title}"
        f", 68 landmarks, trained by `facealign run --config {config_path}` on this project's "
        f"2-core CPU machine. TF Serving layout: `{version.name}/` is the version folder "
        f"({size_mb(version):.1f} MB).", "", provenance, "",
        *([note, ""] if note else []),
        "## Data", "",
        f"- Training: {frame.get('train_faces', '?')} faces of the shared 300-W training data "
        f"(AFW + HELEN train, detector boxes), {frame.get('train_samples', '?')} augmented "
        f"samples ({cfg['augment']['copies']} per face: mirroring, translation sigma "
        f"{cfg['augment']['translation_sigma']} of the "
        f"{TRANSLATION_UNITS[cfg['augment'].get('translation_unit', 'face')]}, rotation sigma "
        f"{cfg['augment']['rotation_sigma_deg']} degrees, scale sigma "
        f"{cfg['augment']['scale_sigma']}).",
        f"- Validation: {report['metrics']['all']['count']} faces held out at random "
        f"(seed {cfg['data']['seed']}) from the same data, never trained on; early stopping "
        "and the figures below use them. They come from the same distribution as the training "
        "faces: these are not 300-W test-set (common / challenging / full) figures.", "",
        "## Training", "",
        f"- Precision {cfg['trainer']['precision']}, batch {cfg['trainer']['batch_size']}, "
        f"learning rate {cfg['trainer']['learning_rate']}, validation every "
        f"{cfg['trainer']['steps_per_epoch']} steps, patience {cfg['trainer']['patience']}, "
        f"at most {cfg['trainer']['max_epochs_per_stage']} epochs per stage, "
        + (f"time budget {cfg['trainer']['time_budget_minutes']:g} min."
           if cfg['trainer'].get('time_budget_minutes') else "no time budget."),
        f"- Training time: {metadata['training_seconds'] / 60:.1f} min; epochs per stage "
        f"{metadata.get('epochs_per_stage', '(not recorded by this version)')}, ended by "
        f"{metadata.get('ended_by', '(not recorded by this version)')}.",
        f"- Validation NME of the mean shape S0 fitted to the detector box: "
        f"{percent(metadata['validation_nme_mean_shape'])} (inter-pupil).",
    ]
    if model == "aan":
        lines += aan_lines(cfg["model"]["aan"])
    for stage, nme in enumerate(per_stage, 1):
        io = f", {percent(per_stage_io[stage - 1])} inter-ocular" if per_stage_io else ""
        when = f"After stage {stage}" if model == "dan" else "After training"
        lines.append(f"- {when}: validation NME {percent(nme)} inter-pupil{io}.")
    if cfg["model"].get("flip_average"):
        lines.append("- Served with test-time flip averaging (`model.flip_average`): the mean "
                     "of the network's answers on the face and on its mirror image. The "
                     "validation NMEs above are the plain network's; the evaluation below is "
                     "of the averaged model.")
    lines += lineage_lines(metadata)
    if metadata.get("validation_curve"):
        lines.append("- Training curve: `training_curve.png` (validation NME after every epoch "
                     "against the samples trained on since the first generation).")
    lines += ["", f"{EVALUATION_HEADING} (LandmarkEvaluator through the serving signature, "
              "held-out photos with their detector boxes, original image pixels)", "",
              *evaluation_table(report["metrics"])]
    lines += ["", f"Blessing: {report['reason']}. CED curve: `ced.png`.", "",
              "## Use", "",
              "```sh",
              f"facealign serve --model-base-path pretrained/{name} --port 8501",
              f"facealign predict --model pretrained/{name}/{version.name} photo.jpg "
              "--overlay out.png",
              "```", "",
              "Signatures: `serving_default` (image_bytes, box x0,y0,x1,y1 -> landmarks in image "
              "pixels, stage_spread, landmark_spread where the exporter wrote it), "
              f"`{TF_EXAMPLE}`, `{PREDICT_CANONICAL}`; metadata with "
              "the mean shape, this configuration and the evaluation in "
              f"`{model_format.EXTRA_DIR}/{model_format.METADATA_FILE}`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the run's configuration file")
    parser.add_argument("--out", help="pretrained/<name> folder to (re)write")
    parser.add_argument("--version", help="the pushed version to publish (default: newest)")
    parser.add_argument("--note", default="", help="a paragraph for the card (Markdown)")
    parser.add_argument("--min-improvement", type=float, default=0.03,
                        help="relative NME gain over the published model needed to replace it "
                             "(default 0.03: 3%%)")
    parser.add_argument("--re-export", action="store_true",
                        help="export the model again with this checkout's exporter (newer "
                             "serving graph), keeping its weights and metadata")
    parser.add_argument("--remeasure", metavar="FOLDER",
                        help="re-score this published model in place instead of publishing")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        metavar="KEY=VALUE", help="configuration override, as facealign run")
    args = parser.parse_args(argv)
    cfg = config_lib.load(args.config, args.overrides)
    root = cfg.resolve(cfg.pipeline.root)
    if args.remeasure:
        return remeasure(pathlib.Path(args.remeasure), root, cfg.evaluator.failure_threshold)
    if not args.out:
        parser.error("--out is required (or --remeasure FOLDER)")
    base = cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name
    version = base / args.version if args.version else newest_version(base)
    if not model_format.has_metadata(version):
        raise SystemExit(f"{version}: not a facealign SavedModel version (no "
                         f"{model_format.METADATA_FILE})")
    metadata = ModelMetadata.read(version).to_dict()
    report, evaluation_dir = evaluation_of(root, metadata)
    # --re-export with the config's model.flip_average where the pushed model has the other:
    # the served graph changes, so it is scored again (as the Evaluator scores) below
    recorded = bool(metadata["config"]["model"].get("flip_average", False))
    flip = cfg.model.flip_average if args.re_export and cfg.model.flip_average != recorded \
        else None
    out = pathlib.Path(args.out)
    staged = out.parent / f".{out.name}.staged"
    if flip is not None:
        shutil.rmtree(staged, ignore_errors=True)
        change = reexport(version, staged / version.name, root, flip)
        faces, threshold = held_out_examples(root), cfg.evaluator.failure_threshold
        measured, errors = measure_with_errors(staged / version.name, faces, threshold)
        label = "flip-averaged" if flip else "plain"
        metrics_lib.plot_ced({f"{version.name} served ({label})": errors,
                              f"{version.name} as pushed": measure_with_errors(
                                  version, faces, threshold)[1]},
                             staged / "ced.png", threshold, title=f"{cfg.serving.model_name}")
        print(f"publish: re-exported with model.flip_average {flip}: landmarks moved at most "
              f"{change:.3f} px on the warmup requests; {headline(measured):.3f}% (the "
              f"Evaluator's {headline(report['metrics']):.3f}% as pushed)")
        report = {**report, "metrics": measured, "reason": (
            f"{report['reason']} as pushed; served with model.flip_average {flip}, scored "
            f"again here through serving_tf_example: NME {headline(measured):.3f}%")}
    ours = headline(report["metrics"])
    published = [p for p in out.iterdir() if p.name.isdigit()] if out.exists() else []
    if published:
        theirs = headline(measure(published[0], held_out_examples(root),
                                  cfg.evaluator.failure_threshold))
        gain = (theirs - ours) / theirs
        print(f"publish: {version.name} {ours:.3f}% against the published {published[0].name} "
              f"{theirs:.3f}% on the same faces: {100 * gain:+.1f}%")
        if gain < args.min_improvement:
            shutil.rmtree(staged, ignore_errors=True)
            raise SystemExit(f"not published: {100 * gain:.1f}% better, "
                             f"{100 * args.min_improvement:.0f}% needed")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if flip is not None:
        shutil.move(str(staged / version.name), str(out / version.name))
        resaved = False
        # the Pusher's batching parameters, timed again: the served graph's cost has changed
        batching = measured_batching_parameters(str(out / version.name))
        if batching is not None:
            model_format.write_batching_parameters(out / version.name, batching)
    elif args.re_export:
        change = reexport(version, out / version.name, root)
        print(f"publish: re-exported with this checkout's exporter; landmarks moved at most "
              f"{change:.3f} px on the warmup requests")
        if change > 0.5:
            raise SystemExit(f"the re-exported model answers differently ({change:.2f} px)")
        resaved = False
    else:
        resaved = compact_copy(version, out / version.name)
    warmup = ensure_real_warmup(root, out / version.name)
    add_evaluation(str(out / version.name), {"split": report["split"],
                                             "metrics": report["metrics"],
                                             "reason": report["reason"]})
    shutil.copy(evaluation_dir / "ced.png" if flip is None else staged / "ced.png",
                out / "ced.png")
    shutil.rmtree(staged, ignore_errors=True)
    metadata = ModelMetadata.read(out / version.name).to_dict()
    curve_png(metadata, out / "training_curve.png")
    provenance = (f"Pushed by the pipeline as version {version.name} of "
                  f"`{cfg.serving.model_name}` (blessing: {report['reason']})"
                  + ("; re-saved here with each weight once (it was pushed by the exporter "
                     "that stored every weight twice), answering exactly as pushed" if resaved
                     else "")
                  + ("; exported again here by this checkout's exporter (the in-graph input "
                     "checks and `landmark_spread`), its weights unchanged" if args.re_export
                     else "")
                  + (f" with `model.flip_average: {str(flip).lower()}`; the evaluation below "
                     "is of that served graph" if flip is not None else "")
                  + f". {warmup} warmup requests (real held-out faces).")
    (out / "MODEL_CARD.md").write_text(card(out.name, out / version.name, metadata, report,
                                            frame_of(root), args.config, provenance, args.note))
    print(f"published {version} -> {out / version.name} ({size_mb(out / version.name):.1f} MB)")
    return 0


def remeasure(folder: pathlib.Path, root: pathlib.Path, threshold: float) -> int:
    """Scores a published model in place through the serving signature; rewrites its card's
    table."""
    from facealign.core import model_paths

    version = pathlib.Path(model_paths.resolve_model_dir(folder))
    metrics = measure(version, held_out_examples(root), threshold)
    metadata = ModelMetadata.read(version).to_dict()
    before = (metadata.get("evaluation") or {}).get("metrics")
    add_evaluation(str(version), {**(metadata.get("evaluation") or {}), "metrics": metrics,
                                  "measured_by": f"{TF_EXAMPLE} on the held-out photos"})
    card_path = folder / "MODEL_CARD.md"
    text = card_path.read_text()
    start = text.index(EVALUATION_HEADING)
    end = text.index("\n\n", text.index("|---|", start))
    was = (f" Before, scored through `predict_canonical` on Augment's OpenCV crops: "
           f"{headline(before):.2f}% inter-ocular.") if before else ""
    section = "\n".join([
        f"{EVALUATION_HEADING} (through the serving signature, held-out photos with their "
        "detector boxes, original image pixels)", "",
        f"Re-measured through `serving_tf_example` (the path a TF Serving client calls) on the "
        f"same {metrics['all']['count']} held-out faces.{was}", "", *evaluation_table(metrics)])
    card_path.write_text(text[:start] + section + text[end:])
    print(f"remeasured {version}: {headline(metrics):.3f}% inter-ocular" + (
        f" (was {headline(before):.3f}%)" if before else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
