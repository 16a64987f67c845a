"""Early stopping on held-out loss: a seeded slice of the examples set aside, and training that stops once the loss
on it no longer falls, so `epochs` is a ceiling rather than a cost."""

from __future__ import annotations

from pathlib import Path

from transformers import TrainerControl, TrainerState

from tests.trainer.support import chat_records
from trainer.config import TrainingConfig
from trainer.recipes import early_stopping, sft


def test_the_validation_slice_is_seeded_small_and_never_trained_on():
    rows = [{"i": i} for i in range(400)]
    train, validation = early_stopping.validation_split(rows, TrainingConfig())
    assert len(validation) == 32 and len(train) == 368
    assert {r["i"] for r in train}.isdisjoint(r["i"] for r in validation)
    assert early_stopping.validation_split(rows, TrainingConfig()) == (train, validation)  # the same every run
    _, other_seed = early_stopping.validation_split(rows, TrainingConfig(seed=1))
    assert other_seed != validation


def test_no_validation_slice_when_switched_off_or_too_few_examples():
    rows = [{"i": i} for i in range(39)]  # a fifth is 7: too few to measure anything
    assert early_stopping.validation_split(rows, TrainingConfig()) == (rows, [])
    many = [{"i": i} for i in range(400)]
    assert early_stopping.validation_split(many, TrainingConfig(early_stopping_patience=None)) == (many, [])
    assert early_stopping.trainer_arguments(TrainingConfig(), []) == {"eval_strategy": "no"}


def test_training_stops_after_patience_evaluations_without_improvement():
    callback = early_stopping.EarlyStopping(patience=2, min_delta=0.01)
    state, control = TrainerState(max_steps=100), TrainerControl()
    for step, loss in [(10, 1.0), (20, 0.5), (30, 0.495), (40, 0.3), (50, 0.31)]:
        state.global_step = step
        callback.on_evaluate(None, state, control, metrics={"eval_loss": loss})
        assert not control.should_training_stop, step  # 0.495 is no real gain, but 0.3 is: the count restarts
    state.global_step = 60
    callback.on_evaluate(None, state, control, metrics={"eval_loss": 0.295})
    assert control.should_training_stop and callback.stopped_at == 60
    assert "stopped early at step 60 of 100" in callback.note(100)


def test_an_sft_run_with_many_epochs_stops_once_the_task_is_learned(base_model: Path, tmp_path: Path):
    config = TrainingConfig(epochs=20, learning_rate=2e-3, cpu_threads=1)
    result = sft.train(config, base_model, chat_records("routing", 200), tmp_path / "adapter")
    assert result.num_examples == 168  # 32 set aside for the validation loss
    planned = 20 * 168 // config.batch_size
    assert result.steps < planned / 2, result.notes
    assert any("stopped early" in note for note in result.notes), result.notes
