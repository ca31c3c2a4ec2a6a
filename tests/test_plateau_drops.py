"""trainer.lr_drops (trainer/fit.py's PlateauDrops) on a real tiny Keras fit: a plateau goes
back to the best epoch's weights at a tenth of the learning rate, the last one ends the fit,
a resumed optimizer says how many drops were taken; and the configuration key's checks."""
import keras
import numpy as np
import pytest

from facealign.core import config as config_lib
from trainer.fit import PlateauDrops


class Scripted(keras.callbacks.Callback):
    """Puts a scripted validation score into each epoch's logs (before PlateauDrops reads
    them) and records the weights and learning rate each epoch ended with."""

    def __init__(self, scores):
        super().__init__()
        self.scores = scores
        self.weights, self.rates = [], []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_score"] = self.scores[epoch]
        self.weights.append(self.model.get_weights()[0].copy())
        self.rates.append(float(np.asarray(self.model.optimizer.learning_rate)))


def tiny_fit(scores, drops: int, patience: int = 2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.01), "mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    scripted = Scripted(scores)
    plateau = PlateauDrops(drops, 0.01, monitor="val_score", mode="min", patience=patience,
                           restore_best_weights=True)
    history = model.fit(x, x[:, :1], epochs=len(scores), verbose=0,
                        callbacks=[scripted, plateau])
    return model, scripted, plateau, history.history


def test_each_plateau_drops_the_rate_until_the_last_ends_the_fit(capsys):
    # epochs 1-3: best, then 2 worse -> drop 1; 4-6: best again, 2 worse -> drop 2;
    # 7-8: 2 worse -> the end (no drop left), though scores for 4 more epochs remain
    scores = [1.0, 1.1, 1.2, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.0, 1.0]
    model, scripted, plateau, history = tiny_fit(scores, drops=2)
    assert len(history["loss"]) == 8
    assert scripted.rates[:3] == pytest.approx([0.01] * 3)
    assert scripted.rates[3:6] == pytest.approx([0.001] * 3)
    assert scripted.rates[6:] == pytest.approx([0.0001] * 2)
    assert plateau.drops_taken() == 2 and plateau.best == pytest.approx(0.9)
    # the fit ends on epoch 4's weights (the best), restored as EarlyStopping restores them
    np.testing.assert_allclose(model.get_weights()[0], scripted.weights[3])
    printed = capsys.readouterr().out
    assert "back to epoch 1's weights, learning rate 0.001 (drop 1 of 2)" in printed
    assert "back to epoch 4's weights, learning rate 0.0001 (drop 2 of 2)" in printed


def test_a_drop_goes_on_from_the_best_epochs_weights():
    scores = [1.0, 1.1, 1.2, 1.3, 1.4]
    _, scripted, _, _ = tiny_fit(scores, drops=1)
    # the epoch after the drop started from epoch 1's weights: it moved them by one Adam
    # step of 0.001 or less per weight, not from where epoch 3 had left them
    assert np.abs(scripted.weights[3] - scripted.weights[0]).max() <= 0.001 * 1.0001 + 1e-7
    assert np.abs(scripted.weights[2] - scripted.weights[0]).max() > 0.01


def test_no_drops_is_early_stopping():
    scores = [1.0, 1.1, 1.2, 0.5, 0.4]
    _, scripted, plateau, history = tiny_fit(scores, drops=0)
    assert len(history["loss"]) == 3 and scripted.rates == pytest.approx([0.01] * 3)
    assert plateau.stopped_epoch == 2


def test_a_resumed_optimizer_says_how_many_drops_were_taken():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.Adam(0.001 / 100), "mse")   # after two drops
    plateau = PlateauDrops(3, 0.001, monitor="val_score")
    plateau.set_model(model)
    assert plateau.drops_taken() == 2


def test_the_key_is_checked(tmp_path):
    base = tmp_path / "c.yaml"
    base.write_text("data:\n  sources:\n    - {name: d, format: 300w, root: .}\n")
    assert config_lib.load(base).trainer.lr_drops == 0
    assert config_lib.load(base, ["trainer.lr_drops=2"]).trainer.lr_drops == 2
    with pytest.raises(config_lib.ConfigError, match="trainer.lr_drops"):
        config_lib.load(base, ["trainer.lr_drops=-1"])
    with pytest.raises(config_lib.ConfigError,
                       match="trainer.lr_drops: is 1, but model 'aan' follows its own"):
        config_lib.load(base, ["trainer.lr_drops=1", "model.name=aan"])
