"""Table 5 of the AAN paper on our 300-W split: AAN, w/o attention, w/o NE layer, w/o both.

Every row is `facealign train` on configs/300w-aan.yaml from random weights,
the same seed, split, augmentation and number of optimizer steps (--epochs of
trainer.steps_per_epoch), with the paper's learning-rate drops (1e-3 -> 1e-4
-> 1e-5 after 25k and 40k of its 45k iterations) at the same fractions of
those steps; the rows differ only in trainer.aan_model.TABLE5's switches.
Equal steps, not equal minutes, so that a busy machine cannot bias a row; the
minutes and training images/s are reported beside each (the rows without
attention do less work per step).

Each model is scored as the Evaluator scores (recipe_ablation.score: the
serving signature on the held-out photos and detector boxes): inter-ocular
NME, AUC@0.08, failure rate. The paper's rows (AFLW, 300VW category 3, NME %)
are printed beside ours. A row whose model exists is not trained again; the
prepared data is shared between rows. Writes <out>/ablation.json,
<out>/ablation.md (the README's table) and <out>/ced.png.

  python benchmarks/aan_ablation.py --out runs/aan-ablation            # ~45 min, 2-core bf16 CPU
  python benchmarks/aan_ablation.py --out runs/aan-ablation-zen3 --batch-size 32 \
      --steps-per-epoch 20                                  # ~90 min, 2-core AVX2 CPU, float32
  python benchmarks/aan_ablation.py --out runs/aan-ablation --epochs 2 --only AAN
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.recipe_ablation import held_out_examples, score, train_variant  # noqa: E402
from trainer.aan_model import TABLE5  # noqa: E402

# Table 5 of Yue et al. 2018: NME % (AFLW, 300VW category 3) for each row.
PAPER = {"AAN": (1.73, 7.98), "w/o attention": (2.06, 9.38), "w/o NE layer": (1.78, 8.15),
         "w/o both": (2.10, 9.60)}
# The paper's drops, as fractions of its 45k iterations.
LR_DROPS = (25 / 45, 40 / 45)


def folder_name(row: str) -> str:
    return row.replace("/", "").replace(" ", "-")


def overrides_for(row: str, epochs: int, steps_per_epoch: int, batch_size: int) -> list[str]:
    steps = epochs * steps_per_epoch
    drops = [round(steps * fraction) for fraction in LR_DROPS]
    sets = ["trainer.warm_start=none", f"trainer.max_epochs_per_stage={epochs}",
            f"trainer.steps_per_epoch={steps_per_epoch}", f"trainer.batch_size={batch_size}",
            f"trainer.patience={epochs}", "trainer.time_budget_minutes=100000",
            f"model.aan.lr_boundaries=[{drops[0]}, {drops[1]}]"]
    for key, value in TABLE5[row].items():
        sets.append(f"model.aan.{key}={json.dumps(value)}")
    return sets


def train(row: str, config: str, out: pathlib.Path, sets: list[str]) -> dict:
    """Trains one row unless its model exists; returns its training summary."""
    return train_variant(row, config, out / folder_name(row), sets)


def table(rows: dict) -> str:
    lines = ["| row | steps x batch | minutes | training img/s | NME (IO) % | AUC@0.08 | "
             "failure % | paper AFLW | paper 300VW-C3 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in rows.items():
        rate = row.get("training_images_per_s")
        lines.append(f"| {name} | {row['steps']} x {row['batch_size']} | {row['minutes']:.1f} | "
                     f"{'-' if rate is None else f'{rate:.0f}'} | "
                     f"{row['nme_inter_ocular']:.2f} | {row['auc']:.3f} | "
                     f"{row['failure']:.1f} | {PAPER[name][0]:.2f} | {PAPER[name][1]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/300w-aan.yaml"))
    parser.add_argument("--out", default=str(REPO / "runs/aan-ablation"))
    parser.add_argument("--epochs", type=int, default=8,
                        help="epochs of trainer.steps_per_epoch steps for every row")
    parser.add_argument("--steps-per-epoch", type=int, default=None,
                        help="optimizer steps an epoch (default: the config's)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="images a step (default: the config's)")
    parser.add_argument("--only", nargs="*", choices=list(TABLE5), help="rows to train")
    parser.add_argument("--threshold", type=float, default=0.08)
    args = parser.parse_args(argv)
    from facealign.core import config as config_lib
    from facealign.core import metrics
    from trainer.precision import cpu_flags, cpu_model

    trainer_cfg = config_lib.load(args.config).trainer
    steps_per_epoch = args.steps_per_epoch or trainer_cfg.steps_per_epoch
    batch_size = args.batch_size or trainer_cfg.batch_size
    out = pathlib.Path(args.out)
    for row in TABLE5:
        if not args.only or row in args.only:
            train(row, args.config, out, overrides_for(row, args.epochs, steps_per_epoch,
                                                       batch_size))
    examples = held_out_examples(args.config)
    rows, errors = {}, {}
    for row in TABLE5:
        summary_path = out / folder_name(row) / "summary.json"
        if not summary_path.exists():
            continue
        summary = json.loads(summary_path.read_text())
        found, errors[row] = score(out / folder_name(row) / "model", examples, args.threshold)
        rows[row] = {"overrides": overrides_for(row, args.epochs, steps_per_epoch, batch_size),
                     "steps": int(summary["steps_per_stage"][-1]), "batch_size": batch_size,
                     "minutes": summary["training_seconds"] / 60,
                     "training_images_per_s": (summary.get("training_images_per_s")
                                               or [None])[-1],
                     "nme_inter_ocular": found["nme_inter_ocular"],
                     "nme_inter_pupil": found["nme_inter_pupil"],
                     "auc": found[f"auc_{args.threshold:g}"],
                     "failure": found[f"failure_rate_{args.threshold:g}"],
                     "faces": found["count"], "precision": summary["precision"]}
        print(f"{row}: {json.dumps(rows[row])}", flush=True)
    if errors:
        metrics.plot_ced(errors, out / "ced.png", args.threshold,
                         title="AAN Table 5 on 300-W: held-out faces")
    report = {"cpu": cpu_model(), "cpu_count": os.cpu_count(),
              "bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}), "rows": rows}
    (out / "ablation.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "ablation.md").write_text(table(rows))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
