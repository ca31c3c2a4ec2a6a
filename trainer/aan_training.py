"""AAN training (sec. 4.2): the whole network at once, the heads' losses summed.

Loss: the NME of eq. 5 (aan_cfg.normalization, inter-ocular = outer eye
corners for 68 points by default; other markups fall back to the box
diagonal, see trainer.losses) on the final output plus, with intermediate
supervision, on every head, each with weight 1 and the same ground truth.
Weight decay: the paper's "0.001" with Adam is the coupled L2 of 2018 code
(0.001 * W added to each kernel's gradient before Adam), built into the
model as kernel regularisers (trainer.aan_model.weight_decay_regularizer;
its docstring has the numbers), so Keras adds it to the loss: the reported
"loss" is the summed NME plus that term, the NME metrics are pure. Keras'
AdamW would scale the decay by the learning rate (1e-6 per step at 1e-3,
about nothing), and the paper's Adam is plain Adam.
Optimiser: Adam. Learning rate: trainer.learning_rate, then /10 and /100 after
the aan_cfg.lr_boundaries steps (PiecewiseConstantDecay). Early stopping on
the validation NME of the final output (patience from TrainerSection),
keeping the best weights.
"""
from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

from facealign.core.config import AanConfig, TrainerSection
from facealign.core.metrics import INTER_OCULAR, INTER_PUPIL
from trainer import dan_input
from trainer.aan_model import FINAL, build_aan_model, inference_model
from trainer.backup import StageBackup
from trainer.fit import TrainingResult, fit, mean_shape_nme, resolve_precision
from trainer.losses import NormalizedLandmarkLoss, NormalizedMeanError
from trainer.time_budget import Deadline

NME = "nme"                       # final output, aan_cfg.normalization
METRICS = {NME: NME, INTER_PUPIL: f"nme_{INTER_PUPIL}", INTER_OCULAR: f"nme_{INTER_OCULAR}"}


def score_names(model: keras.Model) -> dict[str, str]:
    """{score: the name Keras logs the final output's metric under}. Keras prefixes a
    metric with its output's name only when the model has several outputs: with the
    heads, "stage_1_nme"; without them (Table 5's "w/o attention"), plain "nme"."""
    prefix = f"{FINAL}_" if len(model.output) > 1 else ""
    return {score: prefix + metric for score, metric in METRICS.items()}


def with_final_prefix(history: dict, names: dict[str, str]) -> dict:
    """The history under the names of the model with heads ("val_stage_1_nme..."), whatever
    the outputs, so trainer.run.validation_curve and the cards read one set of names."""
    if names[NME] != NME:
        return history
    prefixed = {}
    for key, values in history.items():
        validation = key.startswith("val_")
        name = key[4:] if validation else key
        if name in METRICS.values():
            name = f"{FINAL}_{name}"
        prefixed[("val_" if validation else "") + name] = values
    return prefixed


def aan_optimizer(aan_cfg: AanConfig, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam on the sec.-4.2 step schedule; the weight decay is the model's L2 regularisers."""
    low, high = aan_cfg.lr_boundaries
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [low, high], [learning_rate, learning_rate * 0.1, learning_rate * 0.01])
    return keras.optimizers.Adam(schedule)


def compile_aan(model: keras.Model, aan_cfg: AanConfig, learning_rate: float) -> None:
    """Sums one NME loss per output (weight 1) and the model's weight decay; metrics on
    the final output."""
    optimizer = aan_optimizer(aan_cfg, learning_rate)
    losses = {key: NormalizedLandmarkLoss(aan_cfg.normalization) for key in model.output}
    normalizations = {NME: aan_cfg.normalization, INTER_PUPIL: INTER_PUPIL,
                      INTER_OCULAR: INTER_OCULAR}
    metrics = {FINAL: [NormalizedMeanError(normalizations[score], name=name)
                       for score, name in METRICS.items()]}
    model.compile(optimizer=optimizer, loss=losses, metrics=metrics)


def with_targets(dataset, keys):
    """(image, landmarks) -> (image, {key: landmarks for every supervised output})."""
    keys = list(keys)
    return dataset.map(lambda image, shape: (image, {k: shape for k in keys}))


def train_aan(train_files: str | Iterable[str], eval_files: str | Iterable[str] | None,
              mean_shape, pixel_mean, pixel_std, aan_cfg: AanConfig | None = None,
              trainer_cfg: TrainerSection | None = None, log_dir: str | None = None,
              verbose="auto", seed: int | None = None, init=None,
              backup_dir: str | None = None) -> TrainingResult:
    """Builds and trains an AAN; arguments as trainer.dan_training.train_dan.

    Epochs: trainer_cfg.max_epochs_per_stage (AAN has one stage). init gets
    the training model (with the intermediate heads).
    """
    aan_cfg = aan_cfg or AanConfig()
    trainer_cfg, chosen, reason = resolve_precision(trainer_cfg or TrainerSection())
    if seed is not None:
        keras.utils.set_random_seed(seed)
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    image_size = np.asarray(pixel_mean).shape[0]
    train_data, eval_data = dan_input.training_datasets(
        train_files, eval_files, mean_shape.shape[0], image_size, trainer_cfg, seed)
    if eval_data is None:
        print("train_aan: no eval files; early stopping watches the training data")

    model = build_aan_model(mean_shape, pixel_mean, pixel_std, aan_cfg,
                            precision=trainer_cfg.precision)
    if init is not None:
        init(model)
    compile_aan(model, aan_cfg, trainer_cfg.learning_rate)
    initial = {key: mean_shape_nme(eval_data, mean_shape, key)
               for key in (aan_cfg.normalization, INTER_PUPIL, INTER_OCULAR)}
    print(f"mean shape S0: validation NME {initial[aan_cfg.normalization]:.4f}")

    keys = list(model.output)
    stages = StageBackup(backup_dir)
    names = score_names(model)
    outcome = fit(model, with_targets(train_data, keys),
                  with_targets(eval_data, keys) if eval_data is not None else None,
                  trainer_cfg, monitor=names[NME], score_keys=names, name="aan",
                  log_dir=log_dir, verbose=verbose,
                  time_budget_s=Deadline(trainer_cfg.time_budget_minutes).share(1),
                  backup_dir=stages.fit_folder("aan"))
    scores = outcome.scores
    print(f"AAN: validation NME {scores[NME]:.4f} ({aan_cfg.normalization}), "
          f"{scores[INTER_PUPIL]:.4f} (inter-pupil) after {len(outcome.history['loss'])} "
          f"epochs (ended by {outcome.stop_reason})")
    return TrainingResult(
        model=inference_model(model), nme_inter_pupil=[scores[INTER_PUPIL]],
        nme_inter_ocular=[scores[INTER_OCULAR]],
        initial_nme_inter_pupil=initial[INTER_PUPIL],
        initial_nme_inter_ocular=initial[INTER_OCULAR],
        histories=[with_final_prefix(outcome.history, names)],
        stop_reasons=[outcome.stop_reason], steps=[outcome.steps],
        precision=chosen, precision_reason=reason, resumed_seconds=outcome.resumed_seconds)
