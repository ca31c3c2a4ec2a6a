"""Sequential DAN training (sec. 3.5): one stage at a time, earlier stages frozen.

Stage 1 trains alone until the validation error stops improving for
`patience` epochs, and keeps its best weights; then it is frozen and stage 2
with its connection layers is trained the same way, and so on. A frozen
stage runs, as in the official code, with dropout and batch statistics
(model.dan.frozen_stages: training, the default: the recipe ablation's stage 2
ended 8% more accurate with it) or as at inference (inference). Each stage
minimises eq. 4, the inter-pupil-normalised landmark error of its own output
S_t, through the shared fit loop (trainer/fit.py). Stages a warm start took
from a parent with fewer stages are kept as they are and only scored.
"""
from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np

from facealign.core import metrics
from facealign.core.config import DanConfig, TrainerSection
from facealign.core.metrics import INTER_OCULAR, INTER_PUPIL
from trainer import dan_input, distribution
from trainer.dan_model import (
    build_dan_model,
    num_stages,
    set_frozen_mode,
    set_stage_trainable,
    stage_model,
    stage_output_name,
)
from trainer.fit import FitOutcome, TrainingResult, fit, mean_shape_nme, resolve_precision
from trainer.losses import NormalizedLandmarkLoss, NormalizedMeanError
from trainer.time_budget import Deadline

SCORES = {INTER_PUPIL: "nme", INTER_OCULAR: "nme_inter_ocular"}


def _compiled_stage(model: keras.Model, stage: int, learning_rate: float) -> keras.Model:
    submodel = stage_model(model, stage)
    submodel.compile(optimizer=keras.optimizers.Adam(learning_rate),
                     loss=NormalizedLandmarkLoss(INTER_PUPIL),
                     metrics=[NormalizedMeanError(INTER_PUPIL, name=SCORES[INTER_PUPIL]),
                              NormalizedMeanError(INTER_OCULAR, name=SCORES[INTER_OCULAR])])
    return submodel


def train_stage(model: keras.Model, stage: int, train_data, eval_data,
                trainer_cfg: TrainerSection, log_dir: str | None = None,
                verbose="auto", time_budget_s: float | None = None,
                backup_dir: str | None = None,
                frozen_mode: str = DanConfig().frozen_stages) -> FitOutcome:
    """Trains one stage of `model` with all earlier stages frozen (run in frozen_mode, by
    default model.dan.frozen_stages' default, so a direct call trains as a pipeline does)."""
    for earlier in range(1, stage):
        set_stage_trainable(model, earlier, False)
        set_frozen_mode(model, earlier, frozen_mode)
    set_stage_trainable(model, stage, True)
    submodel = _compiled_stage(model, stage, trainer_cfg.learning_rate)
    try:
        return fit(submodel, train_data, eval_data, trainer_cfg, monitor=SCORES[INTER_PUPIL],
               score_keys=SCORES, name=stage_output_name(stage), log_dir=log_dir,
               verbose=verbose, time_budget_s=time_budget_s, backup_dir=backup_dir)
    finally:
        for earlier in range(1, stage):
            set_frozen_mode(model, earlier, "inference")


def kept_stage(model: keras.Model, stage: int, eval_data) -> FitOutcome:
    """The outcome of a stage taken as it is from a warm-start parent: scored, not trained."""
    set_stage_trainable(model, stage, False)
    scores = _compiled_stage(model, stage, 0.0).evaluate(eval_data, return_dict=True, verbose=0)
    return FitOutcome({key: float(scores[metric]) for key, metric in SCORES.items()},
                      {}, "kept from the parent", 0)


def train_dan(train_files: str | Iterable[str], eval_files: str | Iterable[str] | None,
              mean_shape, pixel_mean, pixel_std, dan_cfg: DanConfig | None = None,
              trainer_cfg: TrainerSection | None = None, log_dir: str | None = None,
              verbose="auto", seed: int | None = None, init=None,
              backup_dir: str | None = None) -> TrainingResult:
    """Builds a DAN and trains its dan_cfg.stages stages sequentially.

    train_files, eval_files: canonical-sample GZIP TFRecords (paths or globs).
    Without eval files, early stopping and the reported NME use the training
    data (not recommended). mean_shape [N, 2], pixel_mean/pixel_std [size,
    size]: training-set statistics, as in build_dan_model. log_dir: a
    TensorBoard subfolder per stage. seed: seeds Keras/TF/NumPy if given.
    init: fn(model) that loads starting weights (warm start). backup_dir:
    where a killed training resumes from (trainer/backup.py).
    """
    dan_cfg = dan_cfg or DanConfig()
    trainer_cfg, chosen, reason = resolve_precision(trainer_cfg or TrainerSection())
    if seed is not None:
        keras.utils.set_random_seed(seed)
    mean_shape = np.asarray(mean_shape, np.float32).reshape(-1, 2)
    image_size = np.asarray(pixel_mean).shape[0]
    train_data, eval_data = dan_input.training_datasets(
        train_files, eval_files, mean_shape.shape[0], image_size, trainer_cfg, seed)
    if eval_data is None:
        print("train_dan: no eval files; early stopping watches the training loss")

    model = build_dan_model(mean_shape, pixel_mean, pixel_std, dan_cfg,
                            precision=trainer_cfg.precision)
    kept = (init(model) or 0) if init is not None else 0
    initial = {key: mean_shape_nme(eval_data, mean_shape, key) for key in SCORES}
    print(f"mean shape S0: validation NME {initial[INTER_PUPIL]:.4f}")
    normaliser = metrics.default_normalization(mean_shape.shape[0], INTER_PUPIL).replace("_", "-")
    outcomes = []
    deadline = Deadline(trainer_cfg.time_budget_minutes)
    stages = distribution.stage_backup(backup_dir)   # workers: read the chief's, write none
    for stage in range(1, num_stages(model) + 1):
        name = stage_output_name(stage)
        done = stages.finished(name, model)
        if done is not None:   # trained by an earlier process: all its seconds were earlier
            outcomes.append(FitOutcome(**{**done, "resumed_seconds": done.get("seconds", 0.0)}))
            continue
        if stage <= kept:
            outcomes.append(kept_stage(model, stage, eval_data))
            continue
        outcome = train_stage(
            model, stage, train_data, eval_data, trainer_cfg, log_dir=log_dir, verbose=verbose,
            time_budget_s=deadline.share(num_stages(model) - stage + 1),
            backup_dir=stages.fit_folder(name), frozen_mode=dan_cfg.frozen_stages)
        stages.finish(name, model, vars(outcome))
        outcomes.append(outcome)
        nme = outcome.scores[INTER_PUPIL]
        print(f"stage {stage}: validation NME {nme:.4f} ({100 * nme:.2f}% {normaliser}, "
              f"{100 * outcome.scores[INTER_OCULAR]:.2f}% inter-ocular) after "
              f"{len(outcome.history['loss'])} epochs (ended by {outcome.stop_reason})")
    for stage in range(1, num_stages(model) + 1):
        set_stage_trainable(model, stage, True)
    return TrainingResult(
        model=model, nme_inter_pupil=[o.scores[INTER_PUPIL] for o in outcomes],
        nme_inter_ocular=[o.scores[INTER_OCULAR] for o in outcomes],
        initial_nme_inter_pupil=initial[INTER_PUPIL],
        initial_nme_inter_ocular=initial[INTER_OCULAR],
        histories=[o.history for o in outcomes], stop_reasons=[o.stop_reason for o in outcomes],
        steps=[o.steps for o in outcomes], precision=chosen, precision_reason=reason,
        resumed_seconds=sum(o.resumed_seconds for o in outcomes))
