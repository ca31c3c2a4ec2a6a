"""The latest blessed model other than the one being evaluated.

TFX's LatestBlessedModelStrategy returns the current model itself once it
has been blessed, so re-running an unchanged pipeline (Trainer cached) feeds
the Evaluator a new baseline, and it and the Pusher run again and push the
same model twice. Excluding the candidate keeps the Evaluator's inputs
identical across unchanged runs, so TFX caching covers the whole pipeline,
while a newly trained model is still compared with the last blessed one.
"""
from __future__ import annotations

from tfx.components.evaluator import constants
from tfx.dsl.components.common import resolver

from components.baseline_resolver.spec import CANDIDATE_KEY, MODEL_BLESSING_KEY, MODEL_KEY


def latest_blessed_other(models, blessings, candidates):
    """(model, blessing) lists: the newest blessed model not in `candidates`."""
    candidate_ids = {a.id for a in candidates}
    blessed = {b.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY): b
               for b in blessings
               if b.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY)
               == constants.BLESSED_VALUE}
    for model in sorted(models, key=lambda a: a.id, reverse=True):
        if model.id in blessed and model.id not in candidate_ids:
            return [model], [blessed[model.id]]
    return [], []


class LatestBlessedOtherModelStrategy(resolver.ResolverStrategy):
    """Inputs: `model` and `model_blessing` (all in the pipeline) and
    `candidate` (the Trainer's output being evaluated)."""

    def resolve_artifacts(self, store, input_dict):
        model, blessing = latest_blessed_other(input_dict.get(MODEL_KEY, []),
                                               input_dict.get(MODEL_BLESSING_KEY, []),
                                               input_dict.get(CANDIDATE_KEY, []))
        return {MODEL_KEY: model, MODEL_BLESSING_KEY: blessing,
                CANDIDATE_KEY: list(input_dict.get(CANDIDATE_KEY, []))}
