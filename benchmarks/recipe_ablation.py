"""Equal-budget ablations of the DAN recipe and of its width, scored on the held-out faces.

Every variant is `facealign train` on configs/300w.yaml from random weights,
with the same seed, data split and held-out faces, and its own overrides:
- "stage 1" table, the same number of optimizer steps: the official code's
  translation unit (frame_pixels) against 0.2 of the face (face); 10 copies
  per face with half mirrored (half) against 10 + 10 mirrored (extra);
- "stage 2" table, the same steps (--stage2-epochs), each on top of the stage-1 baseline
  (a warm start that grows the cascade: stage 1 kept, stage 2 trained):
  the official code's BatchNorm of stage 2's input, and stage 1 run in
  training mode (dropout, batch statistics) while stage 2 trains;
- "width" table, the same wall-clock minutes (a narrower stage does more
  steps in them): base_filters 64 (Table 1), 32 and 16, stage 1 only.
Recipe variants are compared at equal steps so that a busy machine cannot
bias them; the width variants need a quiet one.

Each model is scored as the Evaluator scores: its serving signature on the
held-out raw faces (photos and detector boxes), inter-ocular NME, AUC@0.08
and failure rate. Width rows add inference speed (the canonical signature,
batch 64, best of 5 rounds, measured after all trainings) with cpu_share.
A variant whose model exists is not trained again; every trained one is
scored. Writes <out>/ablation.json,
<out>/ablation.md (the README's tables) and a CED plot per table.

  python benchmarks/recipe_ablation.py --out runs/ablation            # ~95 min on 2 cores
  python benchmarks/recipe_ablation.py --out runs/ablation --only s1-width64   # train one
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

# model.flip_average off: the recipe is compared on the plain network (configs/300w.yaml serves
# the DAN flip-averaged, a test-time choice made apart from the recipe)
FROM_SCRATCH = ["trainer.warm_start=none", "trainer.patience=1000", "model.dan.stages=1",
                "model.flip_average=false"]
BASELINE = "s1-baseline"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    table: str          # "stage 1", "stage 2" or "width"
    label: str
    overrides: tuple[str, ...] = ()


VARIANTS = (
    Variant(BASELINE, "stage 1", "baseline: frame_pixels translation, 10 copies (5 mirrored)"),
    Variant("s1-translation-face", "stage 1", "translation 0.2 of the face",
            ("augment.translation_unit=face",)),
    Variant("s1-mirror-extra", "stage 1", "10 copies + 10 of the mirror image",
            ("augment.mirror_copies=extra",)),
    Variant("s2-baseline", "stage 2", "baseline: plain input, stage 1 in inference mode",
            ("model.dan.stages=2",)),
    Variant("s2-input-bn", "stage 2", "BatchNorm on stage 2's input",
            ("model.dan.stages=2", "model.dan.input_batchnorm=true")),
    Variant("s2-frozen-training", "stage 2", "stage 1 in training mode",
            ("model.dan.stages=2", "model.dan.frozen_stages=training")),
    Variant("s1-width64", "width", "base_filters 64 (Table 1)", ("model.dan.base_filters=64",)),
    Variant("s1-width32", "width", "base_filters 32", ("model.dan.base_filters=32",)),
    Variant("s1-width16", "width", "base_filters 16", ("model.dan.base_filters=16",)),
)
WIDTH_ROWS = ("s1-width64", "s1-width32", "s1-width16")


def train(variant: Variant, config: str, out: pathlib.Path, minutes: float,
          stage2_epochs: int) -> dict:
    """Trains one variant unless its model exists; returns its training summary."""
    work = out / variant.name
    summary = work / "summary.json"
    if summary.exists():
        return json.loads(summary.read_text())
    overrides = list(FROM_SCRATCH)
    if variant.name == BASELINE or variant.table == "width":
        overrides.append(f"trainer.time_budget_minutes={minutes}")
    elif variant.table == "stage 2":   # the same steps for each
        overrides.append(f"trainer.max_epochs_per_stage={stage2_epochs}")
    else:   # the baseline's steps, whatever this machine's speed
        base = json.loads((out / BASELINE / "summary.json").read_text())
        overrides.append(f"trainer.max_epochs_per_stage={base['epochs_per_stage'][0]}")
    if variant.table == "stage 2":
        overrides.append(f"trainer.warm_start={(out / BASELINE / 'model').resolve()}")
    overrides += variant.overrides
    return train_variant(variant.name, config, work, overrides)


def train_variant(name: str, config: str, work: pathlib.Path, overrides: list[str]) -> dict:
    """`facealign train` of one variant of an ablation into `work` (a folder of the ablation's
    output), unless its summary exists; returns that summary. Data a sibling variant prepared
    is linked in: `facealign train` uses the folder whose key matches its data settings."""
    summary = work / "summary.json"
    if summary.exists():
        return json.loads(summary.read_text())
    work.mkdir(parents=True, exist_ok=True)
    for data in sorted(work.parent.glob("*/data-*")):
        target = work / data.name
        if data.parent != work and not target.exists() and not data.is_symlink():
            target.symlink_to(data.resolve(), target_is_directory=True)
    command = [sys.executable, "-m", "facealign.cli", "train", "--config", config,
               "--work-dir", str(work)] + [arg for o in overrides for arg in ("--set", o)]
    print(f"{name}: training ({' '.join(overrides)}); log in {work / 'train.log'}", flush=True)
    with open(work / "train.log", "w") as log:
        code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    if code or not summary.exists():
        tail = (work / "train.log").read_text()[-3000:]
        raise SystemExit(f"{name}: training failed (exit {code}):\n{tail}")
    return json.loads(summary.read_text())


def held_out_examples(config: str, overrides=()) -> list[bytes]:
    """The held-out raw faces (photos, detector boxes) of the configuration's split."""
    from facealign.core import config as config_lib
    from facealign.core.raw_example import record_to_example
    from facealign.core.splits import held_out_faces

    return [record_to_example(r) for r in held_out_faces(config_lib.load(config, list(overrides)))]


def score(model_dir: pathlib.Path, examples: list[bytes], threshold: float):
    """(the Evaluator's summary of all faces, per-face headline errors)."""
    from components.landmark_evaluator import evaluation

    predictions = evaluation.predict(str(model_dir), examples)
    return (evaluation.score(predictions, threshold)["all"],
            evaluation.headline_errors(predictions))


def rounded_figures(result: dict, threshold: float) -> dict:
    """score()'s summary as the lever and data-scaling reports write it: percent NME, AUC and
    failure rate at `threshold`, rounded."""
    return {"nme_inter_ocular_percent": round(result["nme_inter_ocular"], 3),
            "auc": round(result[f"auc_{threshold:g}"], 4),
            "failure_percent": round(result[f"failure_rate_{threshold:g}"], 2)}


def inference_rate(model_dir: pathlib.Path, batch: int = 64, rounds: int = 5) -> float:
    """Images/s of the canonical signature at `batch`, best of `rounds`."""
    import tensorflow as tf

    from benchmarks.model_speed import fastest_in_rounds
    from facealign.core import model_format

    signature = tf.saved_model.load(str(model_dir)).signatures[model_format.PREDICT_CANONICAL]
    name = next(iter(signature.structured_input_signature[1]))
    size = int(signature.structured_input_signature[1][name].shape[1])
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (batch, size, size, 1),
                                                           dtype=np.uint8))
    best = fastest_in_rounds({"canonical": (lambda x: signature(**{name: x}), (images,))},
                             rounds)
    return batch / best["canonical"]


def tables(rows: dict) -> str:
    """The README's markdown tables."""
    lines = []
    for table in ("stage 1", "stage 2", "width"):
        names = WIDTH_ROWS if table == "width" else [v.name for v in VARIANTS
                                                      if v.table == table]
        names = [n for n in names if n in rows]
        if not names:
            continue
        speed = table == "width"
        lines += ["", f"**{table}**", "",
                  "| variant | steps | minutes | training img/s | NME (IO) % | AUC@0.08 | "
                  "failure % |" + (" inference img/s |" if speed else ""),
                  "|---|---|---|---|---|---|---|" + ("---|" if speed else "")]
        for name in names:
            row = rows[name]
            rate = row.get("training_images_per_s")
            lines.append(f"| {row['label']} | {row['steps']} | {row['minutes']:.1f} | "
                         f"{'-' if rate is None else f'{rate:.0f}'} | "
                         f"{row['nme_inter_ocular']:.2f} | {row['auc']:.3f} | "
                         f"{row['failure']:.1f} |"
                         + (f" {row['inference_images_per_s']:.0f} |" if speed else ""))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/300w.yaml"))
    parser.add_argument("--out", default=str(REPO / "runs/ablation"))
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="the baseline's and each width variant's training time")
    parser.add_argument("--stage2-epochs", type=int, default=3,
                        help="epochs (of trainer.steps_per_epoch steps) of each stage-2 variant")
    parser.add_argument("--only", nargs="*", help="variant names (default: all)")
    parser.add_argument("--threshold", type=float, default=0.08)
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    for variant in VARIANTS:   # --only: train these; every trained variant is scored
        if not args.only or variant.name in args.only:
            train(variant, args.config, out, args.minutes, args.stage2_epochs)
    chosen = [v for v in VARIANTS if (out / v.name / "summary.json").exists()]
    examples = held_out_examples(args.config)
    rows, errors = {}, {}
    for variant in chosen:
        summary = json.loads((out / variant.name / "summary.json").read_text())
        metrics_, errors[variant.name] = score(out / variant.name / "model", examples,
                                               args.threshold)
        rows[variant.name] = {
            "table": variant.table, "label": variant.label, "overrides": list(variant.overrides),
            "steps": int(summary["steps_per_stage"][-1]),
            "minutes": summary["training_seconds"] / 60,
            "nme_inter_ocular": metrics_["nme_inter_ocular"],
            "nme_inter_pupil": metrics_["nme_inter_pupil"],
            "auc": metrics_[f"auc_{args.threshold:g}"],
            "failure": metrics_[f"failure_rate_{args.threshold:g}"],
            "faces": metrics_["count"], "precision": summary["precision"],
            "training_images_per_s": (summary.get("training_images_per_s") or [None])[-1]}
        print(f"{variant.name}: {json.dumps(rows[variant.name])}", flush=True)
    from trainer.precision import cpu_flags, cpu_model

    wall, cpu = time.perf_counter(), time.process_time()
    for name in WIDTH_ROWS:
        if name in rows:
            rows[name]["inference_images_per_s"] = inference_rate(out / name / "model")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    from facealign.core import metrics

    for table in ("stage 1", "stage 2", "width"):
        names = WIDTH_ROWS if table == "width" else [v.name for v in VARIANTS
                                                      if v.table == table]
        curves = {rows[n]["label"]: errors[n] for n in names if n in errors}
        if curves:
            metrics.plot_ced(curves, out / f"ced_{table.replace(' ', '')}.png",
                             args.threshold, title=f"DAN ablation, {table}: held-out faces")
    report = {"cpu": cpu_model(), "bf16_flags": sorted(cpu_flags() & {"avx512_bf16",
                                                                        "amx_bf16"}),
              "speed_cpu_share": round(cpu / (wall * os.cpu_count()), 2) if wall > 0.1 else None,
              "rows": rows}
    (out / "ablation.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "ablation.md").write_text(tables(rows))
    print(tables(rows))
    print(json.dumps({k: v for k, v in report.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
