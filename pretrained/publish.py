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

  python pretrained/publish.py --config configs/300w.yaml --out pretrained/dan-300w
"""
from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from components.atomic_pusher.executor import METADATA, add_evaluation  # noqa: E402
from facealign import config as config_lib  # noqa: E402

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
        source = pathlib.Path(report["model"]) / "Format-Serving" / METADATA
        if source.exists() and json.loads(source.read_text()) == mine:
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
    shutil.copytree(src / "assets.extra", dst / "assets.extra")
    again = tf.saved_model.load(str(dst))
    crops = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 112, 112, 1), np.uint8))
    for name in ("landmarks", "stage_spread"):
        a = loaded.signatures["predict_canonical"](image=crops)[name].numpy()
        b = again.signatures["predict_canonical"](image=crops)[name].numpy()
        if not np.array_equal(a, b):
            raise SystemExit(f"the re-saved model answers differently ({name})")
    return True


def ensure_real_warmup(root: pathlib.Path, model_dir: pathlib.Path) -> int:
    """Real held-out faces as warmup requests where the version has none; their count."""
    from trainer import export, run

    metadata = json.loads((model_dir / METADATA).read_text())
    if metadata.get("warmup_requests", 0) > 1:      # written from real faces already
        return metadata["warmup_requests"]
    splits = sorted(root.glob("Augment/canonical_examples/*/Split-eval"),
                    key=lambda p: int(p.parent.name))
    if not splits:
        raise SystemExit(f"{model_dir} has no real warmup requests and {root} has no Augment "
                         "eval split to write them from")
    count = export.write_warmup_requests(str(model_dir),
                                         run.warmup_faces([str(splits[-1] / "*")]))
    metadata["warmup_requests"] = count
    (model_dir / METADATA).write_text(json.dumps(metadata, indent=1))
    return count


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
    low, high = aan["lr_boundaries"]
    return [
        f"- Network: bottleneck widths {widths}, attention "
        f"{'on' if aan['attention'] else 'off (ablation)'}, {aan['embedding']} embedding of "
        f"d = {aan['embedding_dim']}, intermediate supervision "
        f"{'on (the heads are not exported)' if aan['intermediate_supervision'] else 'off'}.",
        f"- AdamW, weight decay {aan['weight_decay']:g}; learning rate /10 after {low} and "
        f"/100 after {high} steps; loss: {aan['normalization']}-normalised NME summed over "
        "the outputs.",
    ]


def card(name: str, version: pathlib.Path, metadata: dict, report: dict, frame: dict,
         config_path: str, provenance: str, note: str = "") -> str:
    cfg = metadata["config"]
    model = cfg["model"]["name"]
    per_stage = metadata["validation_nme_inter_pupil_per_stage"]
    per_stage_io = metadata.get("validation_nme_inter_ocular_per_stage")
    lines = [
        f"# {name}", "",
        f"{'Deep Alignment Network (Kowalski et al. 2017), ' + str(metadata['stages']) + ' stages' if model == 'dan' else 'Attentional Alignment Network (Yue et al. 2018)'}"
        f", 68 landmarks, trained by `facealign run --config {config_path}` on this project's "
        f"2-core CPU machine. TF Serving layout: `{version.name}/` is the version folder "
        f"({size_mb(version):.1f} MB).", "", provenance, "",
        *([note, ""] if note else []),
        "## Data", "",
        f"- Training: {frame.get('train_faces', '?')} faces of the shared 300-W training data "
        f"(AFW + HELEN train, detector boxes), {frame.get('train_samples', '?')} augmented "
        f"samples ({cfg['augment']['copies']} per face: mirroring, translation sigma "
        f"{cfg['augment']['translation_sigma']}, rotation sigma "
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
    lines += ["", "## Evaluation (LandmarkEvaluator, held-out faces, original image pixels)", "",
              "| subset | faces | NME inter-ocular | NME inter-pupil | NME box diagonal | "
              "AUC@0.08 | failure@0.08 |", "|---|---|---|---|---|---|---|"]
    for subset, figures in report["metrics"].items():
        lines.append(f"| {subset} | {figures['count']} | {figures['nme_inter_ocular']:.2f}% | "
                     f"{figures['nme_inter_pupil']:.2f}% | {figures['nme_box_diagonal']:.2f}% | "
                     f"{figures['auc_0.08']:.3f} | {figures['failure_rate_0.08']:.1f}% |")
    lines += ["", f"Blessing: {report['reason']}. CED curve: `ced.png`.", "",
              "## Use", "",
              "```sh",
              f"facealign serve --model-base-path pretrained/{name} --port 8501",
              f"facealign predict --model pretrained/{name}/{version.name} photo.jpg "
              "--overlay out.png",
              "```", "",
              "Signatures: `serving_default` (image_bytes, box x0,y0,x1,y1 -> landmarks in image "
              "pixels, stage_spread), `serving_tf_example`, `predict_canonical`; metadata with "
              "the mean shape, this configuration and the evaluation in "
              "`assets.extra/facealign_metadata.json`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="the run's configuration file")
    parser.add_argument("--out", required=True, help="pretrained/<name> folder to (re)write")
    parser.add_argument("--version", help="the pushed version to publish (default: newest)")
    parser.add_argument("--note", default="", help="a paragraph for the card (Markdown)")
    parser.add_argument("--set", action="append", default=[], dest="overrides",
                        metavar="KEY=VALUE", help="configuration override, as facealign run")
    args = parser.parse_args(argv)
    cfg = config_lib.load(args.config, args.overrides)
    root = cfg.resolve(cfg.pipeline.root)
    base = cfg.resolve(cfg.serving.base_dir) / cfg.serving.model_name
    version = base / args.version if args.version else newest_version(base)
    if not (version / METADATA).is_file():
        raise SystemExit(f"{version}: not a facealign SavedModel version (no {METADATA})")
    metadata = json.loads((version / METADATA).read_text())
    report, evaluation_dir = evaluation_of(root, metadata)
    out = pathlib.Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    resaved = compact_copy(version, out / version.name)
    warmup = ensure_real_warmup(root, out / version.name)
    add_evaluation(str(out / version.name), {"split": report["split"],
                                             "metrics": report["metrics"],
                                             "reason": report["reason"]})
    shutil.copy(evaluation_dir / "ced.png", out / "ced.png")
    metadata = json.loads((out / version.name / METADATA).read_text())
    provenance = (f"Pushed by the pipeline as version {version.name} of "
                  f"`{cfg.serving.model_name}` (blessing: {report['reason']})"
                  + ("; re-saved here with each weight once (it was pushed by the exporter "
                     "that stored every weight twice), answering exactly as pushed" if resaved
                     else "") + f". {warmup} warmup requests (real held-out faces).")
    (out / "MODEL_CARD.md").write_text(card(out.name, out / version.name, metadata, report,
                                            frame_of(root), args.config, provenance, args.note))
    print(f"published {version} -> {out / version.name} ({size_mb(out / version.name):.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
