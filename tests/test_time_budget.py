"""The training time budget on a real (tiny) Keras fit with a fake clock."""
import keras
import numpy as np

from trainer.time_budget import Deadline, TimeBudget, stop_reason


class FakeClock:
    """Advances by `step` seconds at every reading."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def tiny_fit(callback, epochs: int, patience: int = 100):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    stop = keras.callbacks.EarlyStopping("loss", patience=patience, restore_best_weights=True)
    return model.fit(x, x[:, :1], epochs=epochs, verbose=0, callbacks=[stop, callback]).history


def test_budget_stops_before_the_next_epoch_would_overrun():
    # one clock reading at train begin and one per epoch end: 10 s per epoch
    budget = TimeBudget(45.0, clock=FakeClock(10.0))
    history = tiny_fit(budget, epochs=50)
    # after 3 epochs 30 s are used, a 4th ends at 40 <= 45; after it, a 5th would end at 50
    assert len(history["loss"]) == 4
    assert budget.exhausted
    assert stop_reason(history, budget, 50) == "time budget"


def test_no_budget_runs_every_epoch():
    budget = TimeBudget(None, clock=FakeClock(1000.0))
    history = tiny_fit(budget, epochs=6)
    assert len(history["loss"]) == 6 and not budget.exhausted
    assert stop_reason(history, budget, 6) == "max epochs"
    assert stop_reason({"loss": [1.0, 2.0]}, budget, 6) == "patience"


def test_deadline_shares_what_is_left_evenly():
    clock = FakeClock(0.0)
    deadline = Deadline(10.0, clock=clock)       # 600 s
    assert deadline.share(2) == 300.0
    clock.now += 400.0                           # the first fit ended early, at 400 s... or late
    assert deadline.share(1) == 200.0
    clock.now += 1000.0
    assert deadline.share(1) == 0.0
    assert Deadline(None).share(3) is None
