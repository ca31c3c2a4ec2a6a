"""The model card of a published model (pretrained/<name>/MODEL_CARD.md) and its pictures.

Written from what the run recorded, never typed by hand: the model's metadata
(configuration, per-stage validation NME, training time, how each stage
ended, the lineage across warm-started generations and the validation
curve), the Evaluator's figures and the Augment frame's counts. The run
report reads the same lineage and curve.
"""
from __future__ import annotations

import pathlib

from facealign.core import model_format
from facealign.core.model_format import PREDICT_CANONICAL, TF_EXAMPLE

EVALUATION_HEADING = "## Evaluation"
TRANSLATION_UNITS = {"face": "face's width and height",
                     "frame_pixels": "canonical S0's width in original pixels, as the official "
                                     "code"}


def training_curve_png(metadata: dict, path: pathlib.Path) -> bool:
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
    ] + (["- Data spans per generation: " + "; ".join(
        f"{i}: {', '.join(map(str, spans)) if spans else 'not recorded'}"
        for i, spans in enumerate(lineage["spans_per_generation"], start=1))]
         if any(lineage.get("spans_per_generation") or []) else [])


def evaluation_table(metrics: dict) -> list[str]:
    lines = ["| subset | faces | NME inter-ocular | NME inter-pupil | NME box diagonal | "
             "AUC@0.08 | failure@0.08 |", "|---|---|---|---|---|---|---|"]
    for subset, figures in metrics.items():
        lines.append(f"| {subset} | {figures['count']} | {figures['nme_inter_ocular']:.2f}% | "
                     f"{figures['nme_inter_pupil']:.2f}% | {figures['nme_box_diagonal']:.2f}% | "
                     f"{figures['auc_0.08']:.3f} | {figures['failure_rate_0.08']:.1f}% |")
    return lines


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


def with_remeasured_evaluation(text: str, metrics: dict, nme_before: float | None) -> str:
    """A card's text with its evaluation table replaced by a re-measurement's `metrics`."""
    start = text.index(EVALUATION_HEADING)
    end = text.index("\n\n", text.index("|---|", start))
    was = (f" Before, scored through `predict_canonical` on Augment's OpenCV crops: "
           f"{nme_before:.2f}% inter-ocular.") if nme_before is not None else ""
    section = "\n".join([
        f"{EVALUATION_HEADING} (through the serving signature, held-out photos with their "
        "detector boxes, original image pixels)", "",
        f"Re-measured through `serving_tf_example` (the path a TF Serving client calls) on the "
        f"same {metrics['all']['count']} held-out faces.{was}", "", *evaluation_table(metrics)])
    return text[:start] + section + text[end:]
