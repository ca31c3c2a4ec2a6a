"""Publishing a pushed version into pretrained/<name>, with its model card (`facealign publish`).

Publishing replaces the folder's version (every clone pays for each published
model in git history), and only when the new model's held-out NME is at least
`min_improvement` (relative) better than the published model's on the same
faces: the Evaluator's. Both come from the Evaluator's per-face errors where it
scored them (the candidate always; the published model when it was the
Evaluator's baseline); a published model the run never met is scored on those
faces. The copy's metadata gets the evaluation, as the Pusher writes
it; the CED plot and the training curve go beside the card.

Versions pushed before the exporter stored each weight once (Keras'
ExportArchive wrote every weight twice, ~178 MB for the 2-stage DAN) are
re-saved with their own signatures and each weight once, checked to answer
exactly as the original; versions without real warmup requests get the run's
first held-out faces (trainer.run.warmup_faces).
"""
from __future__ import annotations

import json
import pathlib
import shutil

from components.atomic_pusher.push import add_evaluation, measured_batching_parameters
from facealign.core import config as config_lib
from facealign.core import metrics as metrics_lib
from facealign.core import model_card, model_format
from facealign.core.errors import UserError
from facealign.core.model_format import (
    PREDICT_CANONICAL,
    SERVING_DEFAULT,
    ModelMetadata,
)


class PublishError(UserError):
    """Nothing to publish, or a model that is not better enough: one line, no traceback."""


def newest_version(base: pathlib.Path) -> pathlib.Path:
    versions = sorted((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise PublishError(f"no pushed version under {base}")
    return versions[-1]


def copied_from(metadata: dict, model_uri: str) -> bool:
    """Whether a version with this metadata is a copy of the Trainer model at model_uri: the
    same metadata, less the evaluation the Pusher added."""
    source = pathlib.Path(model_uri) / "Format-Serving"
    mine = {k: v for k, v in metadata.items() if k != "evaluation"}
    return model_format.has_metadata(source) and ModelMetadata.read(source).to_dict() == mine


def evaluation_of(root: pathlib.Path, metadata: dict) -> tuple[dict, pathlib.Path]:
    """The Evaluator report (and its folder) of the Trainer model this version was copied from
    (copied_from)."""
    for report_path in sorted(root.glob("LandmarkEvaluator/evaluation/*/metrics.json"),
                              key=lambda p: -int(p.parent.name)):
        report = json.loads(report_path.read_text())
        if copied_from(metadata, report["model"]):
            return report, report_path.parent
    raise PublishError(f"no Evaluator report under {root} for this model")


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
            raise PublishError(f"the re-saved model answers differently ({name})")
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
        raise PublishError(f"{model_dir} has no real warmup requests and {root} has no Augment "
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
        raise PublishError(f"{root} has no LandmarkExampleGen eval split: run the pipeline first")
    return sorted(str(p) for p in splits[-1].glob("*"))


def face_errors_of(root: pathlib.Path, report: dict, evaluation_dir: pathlib.Path,
                   published: pathlib.Path):
    """(candidate's per-face errors, published model's, where the latter came from), percent,
    on the Evaluator's faces."""
    from components.landmark_evaluator import evaluation
    from components.landmark_evaluator.spec import FACE_ERRORS_FILE

    path = evaluation_dir / FACE_ERRORS_FILE
    if not path.is_file():
        raise PublishError(f"{evaluation_dir}: no {FACE_ERRORS_FILE} (a run before per-face "
                           "errors were kept): run the pipeline again")
    errors = evaluation.read_face_errors(str(path))
    baseline = report.get("baseline")
    if errors["baseline"] is not None and baseline and model_format.has_metadata(published) \
            and copied_from(ModelMetadata.read(published).to_dict(), baseline["model"]):
        return errors["candidate"], errors["baseline"], "the Evaluator's baseline"
    files = report.get("examples") or held_out_examples(root)
    predictions = evaluation.predict(str(published),
                                     evaluation.unique_faces(evaluation.read_examples(files)))
    if predictions.face_ids != errors["face_id"]:
        raise PublishError(f"{published}: scored on other faces than the Evaluator's")
    return errors["candidate"], 100 * evaluation.headline_errors(predictions), \
        "scored on the Evaluator's faces"


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


def frame_of(root: pathlib.Path) -> dict:
    frames = sorted(root.glob("Augment/canonical_frame/*/canonical_frame.json"),
                    key=lambda p: int(p.parent.name))
    return json.loads(frames[-1].read_text()) if frames else {}


def _reexport_flipped(cfg, version: pathlib.Path, staged: pathlib.Path, flip: bool,
                      report: dict) -> dict:
    """The version exported again into `staged` with model.flip_average `flip`, scored again
    as the Evaluator scores (with a CED of both graphs): the report of that served graph."""
    root, threshold = cfg.resolve(cfg.pipeline.root), cfg.evaluator.failure_threshold
    shutil.rmtree(staged, ignore_errors=True)
    change = reexport(version, staged / version.name, root, flip)
    faces = held_out_examples(root)
    measured, errors = measure_with_errors(staged / version.name, faces, threshold)
    label = "flip-averaged" if flip else "plain"
    metrics_lib.plot_ced({f"{version.name} served ({label})": errors,
                          f"{version.name} as pushed": measure_with_errors(
                              version, faces, threshold)[1]},
                         staged / "ced.png", threshold, title=f"{cfg.serving.model_name}")
    print(f"publish: re-exported with model.flip_average {flip}: landmarks moved at most "
          f"{change:.3f} px on the warmup requests; {headline(measured):.3f}% (the "
          f"Evaluator's {headline(report['metrics']):.3f}% as pushed)")
    return {**report, "metrics": measured, "reason": (
        f"{report['reason']} as pushed; served with model.flip_average {flip}, scored "
        f"again here through {model_format.TF_EXAMPLE}: NME {headline(measured):.3f}%")}


def _provenance(cfg, version: pathlib.Path, report: dict, resaved: bool, re_export: bool,
                flip: bool | None, warmup: int) -> str:
    """The card's sentence on where the published copy came from and what was done to it."""
    return (f"Pushed by the pipeline as version {version.name} of "
            f"`{cfg.serving.model_name}` (blessing: {report['reason']})"
            + ("; re-saved here with each weight once (it was pushed by the exporter "
               "that stored every weight twice), answering exactly as pushed" if resaved else "")
            + ("; exported again here by this checkout's exporter (the in-graph input "
               "checks and `landmark_spread`), its weights unchanged" if re_export else "")
            + (f" with `model.flip_average: {str(flip).lower()}`; the evaluation below "
               "is of that served graph" if flip is not None else "")
            + f". {warmup} warmup requests (real held-out faces).")


def publish(cfg: config_lib.Config, config_path: str, out, version: str | None = None,
            note: str = "", min_improvement: float = 0.03, re_export: bool = False
            ) -> pathlib.Path:
    """Publishes a pushed version of the configured run into `out`; the version folder written.

    version: the pushed version's number (default: the newest). re_export:
    export it again with this checkout's exporter, with the configuration's
    model.flip_average where the pushed model has the other (the served graph
    then changes, so it is scored again, as the Evaluator scores).
    """
    root = cfg.resolve(cfg.pipeline.root)
    base = cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name
    if not base.is_dir():
        raise PublishError(f"{base}: no pushed versions (run the pipeline first)")
    version = base / version if version else newest_version(base)
    if not model_format.has_metadata(version):
        raise PublishError(f"{version}: not a facealign SavedModel version (no "
                           f"{model_format.METADATA_FILE})")
    metadata = ModelMetadata.read(version).to_dict()
    report, evaluation_dir = evaluation_of(root, metadata)
    recorded = bool(metadata["config"]["model"].get("flip_average", False))
    flip = cfg.model.flip_average if re_export and cfg.model.flip_average != recorded else None
    out = pathlib.Path(out)
    staged = out.parent / f".{out.name}.staged"
    if flip is not None:
        report = _reexport_flipped(cfg, version, staged, flip, report)
    ours = headline(report["metrics"])
    published = [p for p in out.iterdir() if p.name.isdigit()] if out.exists() else []
    if published:
        candidate, theirs_per_face, origin = face_errors_of(root, report, evaluation_dir,
                                                            published[0])
        theirs, paired_text = float(theirs_per_face.mean()), ""
        if flip is None:   # (a re-exported graph was scored again: no per-face errors of it)
            ours = float(candidate.mean())
            paired = metrics_lib.paired_difference(candidate, theirs_per_face)
            paired_text = (f"; paired difference {paired['mean']:+.3f} points (95% CI "
                           f"{paired['low']:+.3f}..{paired['high']:+.3f})")
        gain = (theirs - ours) / theirs
        print(f"publish: {version.name} {ours:.3f}% against the published {published[0].name} "
              f"{theirs:.3f}% ({origin}) on the same {len(theirs_per_face)} faces: "
              f"{100 * gain:+.1f}%{paired_text}")
        if gain < min_improvement:
            shutil.rmtree(staged, ignore_errors=True)
            raise PublishError(f"not published: {100 * gain:.1f}% better, "
                               f"{100 * min_improvement:.0f}% needed")
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
    elif re_export:
        change = reexport(version, out / version.name, root)
        print(f"publish: re-exported with this checkout's exporter; landmarks moved at most "
              f"{change:.3f} px on the warmup requests")
        if change > 0.5:
            raise PublishError(f"the re-exported model answers differently ({change:.2f} px)")
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
    model_card.training_curve_png(metadata, out / "training_curve.png")
    provenance = _provenance(cfg, version, report, resaved, re_export, flip, warmup)
    (out / "MODEL_CARD.md").write_text(model_card.card(
        out.name, out / version.name, metadata, report, frame_of(root), config_path, provenance,
        note))
    print(f"published {version} -> {out / version.name} "
          f"({model_card.size_mb(out / version.name):.1f} MB)")
    return out / version.name


def remeasure(cfg: config_lib.Config, folder) -> float:
    """Scores a published model in place through the serving signature on the configured
    run's held-out faces; rewrites its card's evaluation table. Returns the headline NME."""
    from facealign.core import model_paths

    folder = pathlib.Path(folder)
    root = cfg.resolve(cfg.pipeline.root)
    version = pathlib.Path(model_paths.resolve_model_dir(folder))
    metrics = measure(version, held_out_examples(root), cfg.evaluator.failure_threshold)
    metadata = ModelMetadata.read(version).to_dict()
    before = (metadata.get("evaluation") or {}).get("metrics")
    add_evaluation(str(version), {**(metadata.get("evaluation") or {}), "metrics": metrics,
                                  "measured_by": f"{model_format.TF_EXAMPLE} on the held-out "
                                                 "photos"})
    card_path = folder / "MODEL_CARD.md"
    card_path.write_text(model_card.with_remeasured_evaluation(
        card_path.read_text(), metrics, None if before is None else headline(before)))
    print(f"remeasured {version}: {headline(metrics):.3f}% inter-ocular" + (
        f" (was {headline(before):.3f}%)" if before else ""))
    return headline(metrics)
