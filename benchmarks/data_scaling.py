"""What more training faces would buy: a learning curve on the held-out faces (issue #26).

Trains the configuration's model from random weights on nested fractions of its training
faces (data.train_fraction: a smaller fraction's faces are inside every larger one's, and the
held-out faces are the same for all), each with the configuration's recipe (patience,
learning-rate drops) under one cap on epochs and no time budget, so that arms may share a
busy CPU without biasing each other. Each arm is scored as the Evaluator scores (the serving
signature on the held-out photos from their CSV boxes, inter-ocular NME), and also on training
faces that every arm trained on (the smallest fraction's): the gap between the two is what the
model has not learned to generalise. A power law, NME = a * faces^-b, is fitted to the held-out
figures of every arm and seed (least squares in log-log) and read at the full 300-W training
set's 3,148 faces. `--seeds` repeats every arm with other initial weights and Augment copies
(augment.seed): stopping by patience on a noisy validation curve makes one run a noisy point.
Writes <out>/data_scaling.json and <out>/data_scaling.png.

  python benchmarks/data_scaling.py --config configs/300w-fast.yaml --out runs/data-scaling \
      --fractions 0.25 0.5 1 --seeds 0 1 --max-epochs 100 [--only 0.25]

`--only F` trains fraction F's arms and stops (start one process per fraction to run them side
by side); a run without it trains what is missing, then scores and fits every arm.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.recipe_ablation import rounded_figures, score, train_variant  # noqa: E402

FULL_300W_TRAINING_FACES = 3148   # AFW, HELEN train, LFPW train and iBUG: dlib's training set


def arm_name(fraction: float, seed: int) -> str:
    return f"fraction-{fraction:g}" + (f"-seed-{seed}" if seed else "")


def arm_overrides(fraction: float, max_epochs: int, seed: int = 0) -> list[str]:
    """From random weights (drawn by `seed`, which also draws Augment's copies) on `fraction`
    of the training faces, the recipe's stopping rules under a cap on epochs; no time budget,
    so a busy CPU changes no arm's steps."""
    return [f"data.train_fraction={fraction:g}", f"augment.seed={seed}",
            "trainer.warm_start=none", f"trainer.max_epochs_per_stage={max_epochs}",
            "trainer.time_budget_minutes=null"]


def read_faces(config: str, fractions: list[float]) -> tuple[list, dict[float, list]]:
    """(the held-out faces, {fraction: the training faces it keeps}), the data read once: the
    hold-out is drawn before the subset, so every fraction's subset is a filter of all the
    training faces by the same rule data.train_fraction applies (splits.in_training_subset)."""
    from facealign.core import config as config_lib
    from facealign.core import splits

    cfg = config_lib.load(config, ["data.train_fraction=1"])
    faces = splits.configured_faces(cfg, log=lambda line: None)
    return faces[splits.EVAL], {
        fraction: [r for r in faces[splits.TRAIN]
                   if splits.in_training_subset(r.face_id, cfg.data.seed, fraction)]
        for fraction in fractions}


def fit_power_law(faces, nme) -> tuple[float, float]:
    """(a, b) of NME = a * faces^-b, least squares on the logarithms."""
    slope, intercept = np.polyfit(np.log(faces), np.log(nme), 1)
    return float(np.exp(intercept)), float(-slope)


def plot(rows: list[dict], references: dict, a: float, b: float, path: pathlib.Path) -> None:
    import matplotlib
    import matplotlib.ticker
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    faces = np.array([r["training_faces"] for r in rows])
    grid = np.geomspace(faces.min() * 0.8, FULL_300W_TRAINING_FACES * 1.2, 50)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, marker, label in (("held_out", "o", "held-out faces"),
                               ("training_sample", "s", "training faces every arm saw")):
        nme = np.array([r[key]["nme_inter_ocular_percent"] for r in rows])
        means = [nme[faces == n].mean() for n in np.unique(faces)]
        line, = ax.plot(np.unique(faces), means, marker + "-", label=f"{label} (mean of seeds)")
        ax.plot(faces, nme, marker, color=line.get_color(), alpha=0.35)
    for name, reference in references.items():   # trained on all the faces, as published
        ax.plot(faces.max(), reference["held_out"]["nme_inter_ocular_percent"], "*",
                markersize=9, label=f"{name}, held-out")
    ax.plot(grid, a * grid ** -b, ":", color="gray", label=f"fit {a:.1f} * faces^-{b:.3f}")
    ax.axvline(FULL_300W_TRAINING_FACES, color="gray", lw=0.8)
    ax.text(FULL_300W_TRAINING_FACES, a * FULL_300W_TRAINING_FACES ** -b,
            f"  full 300-W train\n  ({FULL_300W_TRAINING_FACES} faces)", fontsize=8, ha="right",
            va="bottom")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = sorted({*np.unique(faces).tolist(), FULL_300W_TRAINING_FACES})
    ax.set_xticks(ticks, [str(int(t)) for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("training faces")
    ax.set_ylabel("NME inter-ocular (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO / "configs/300w-fast.yaml"))
    parser.add_argument("--out", default=str(REPO / "runs/data-scaling"))
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--max-epochs", type=int, default=30, help="cap on epochs per stage")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="augment.seed of each repetition (the initial weights and copies)")
    parser.add_argument("--only", type=float, help="train this fraction's arms and stop")
    parser.add_argument("--train-sample", type=int, default=100,
                        help="training faces (of the smallest fraction's) scored per arm")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=PATH",
                        help="also score this model (a SavedModel or a TF Serving base folder, "
                             "its newest version; e.g. a published one) on the same faces")
    parser.add_argument("--threshold", type=float, default=0.08)
    args = parser.parse_args(argv)
    fractions = sorted(set(args.fractions))
    if len(fractions) < 2 or not all(0 < f <= 1 for f in fractions):
        parser.error("--fractions: give two or more fractions in (0, 1]")
    if args.only is not None and args.only not in fractions:
        parser.error(f"--only {args.only:g} is not one of --fractions {fractions}")
    seeds = sorted(set(args.seeds))
    from facealign.core import model_paths

    reference_dirs = {}   # checked before any training: a typo is one line, not a traceback
    for reference in args.reference:
        name, _, path = reference.partition("=")
        if not name or not path:
            parser.error(f"--reference {reference!r}: give NAME=PATH")
        try:
            reference_dirs[name] = (path, model_paths.resolve_model_dir(path))
        except OSError as exc:
            parser.error(f"--reference {name}: {exc}")
    out = pathlib.Path(args.out)
    for fraction in [args.only] if args.only is not None else fractions:
        for seed in seeds:
            train_variant(arm_name(fraction, seed), args.config, out / arm_name(fraction, seed),
                          arm_overrides(fraction, args.max_epochs, seed))
    if args.only is not None:
        return 0

    from facealign.core.raw_example import record_to_example

    held_out_faces, training = read_faces(args.config, fractions)
    faces_scored = {"held_out": [record_to_example(r) for r in held_out_faces],
                    "training_sample": [record_to_example(r)   # every arm trained on these
                                        for r in training[fractions[0]][:args.train_sample]]}

    def scores(model: pathlib.Path) -> dict:
        """The model's figures on the held-out faces and on the training faces all arms saw."""
        return {name: {"faces": len(examples),
                       **rounded_figures(score(model, examples, args.threshold)[0],
                                         args.threshold)}
                for name, examples in faces_scored.items()}

    references = {}
    for name, (path, model_dir) in reference_dirs.items():
        references[name] = {"model": path, **scores(pathlib.Path(model_dir))}
        print(f"{name}: held-out NME {references[name]['held_out']['nme_inter_ocular_percent']}%,"
              f" on training faces "
              f"{references[name]['training_sample']['nme_inter_ocular_percent']}%", flush=True)
    rows = []
    for fraction in fractions:
        count = len(training[fraction])
        for seed in seeds:
            work = out / arm_name(fraction, seed)
            summary = json.loads((work / "summary.json").read_text())
            row = {"fraction": fraction, "seed": seed, "training_faces": count,
                   "steps": sum(summary["steps_per_stage"]),
                   "minutes": round(summary["training_seconds"] / 60, 1),
                   **scores(work / "model")}
            print(f"{count} training faces ({fraction:g}, seed {seed}), {row['steps']} steps: "
                  f"held-out NME {row['held_out']['nme_inter_ocular_percent']}%, on training "
                  f"faces {row['training_sample']['nme_inter_ocular_percent']}%", flush=True)
            rows.append(row)
    # every repetition is a point of the fit
    a, b = fit_power_law([r["training_faces"] for r in rows],
                         [r["held_out"]["nme_inter_ocular_percent"] for r in rows])
    largest = rows[-1]
    factor = (FULL_300W_TRAINING_FACES / largest["training_faces"]) ** -b
    at_full = a * FULL_300W_TRAINING_FACES ** -b
    print(f"fit: NME = {a:.2f} * faces^-{b:.3f}; at {FULL_300W_TRAINING_FACES} faces "
          f"{at_full:.2f}% held-out, x{factor:.3f} of the "
          f"{largest['training_faces']}-face arm", flush=True)
    report = {"config": args.config, "max_epochs_per_stage": args.max_epochs, "seeds": seeds,
              "rows": rows,
              "references": references,
              "power_law": {"a": round(a, 4), "b": round(b, 4)},
              "at_full_300w": {"training_faces": FULL_300W_TRAINING_FACES,
                               "nme_inter_ocular_percent": round(at_full, 3),
                               "factor_over_largest_arm": round(factor, 4)}}
    (out / "data_scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, references, a, b, out / "data_scaling.png")
    print(f"wrote {out / 'data_scaling.json'} and {out / 'data_scaling.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
