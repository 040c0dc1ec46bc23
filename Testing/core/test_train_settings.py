"""The training settings object: one field gives a flag, a check, a record and a resume comparison."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

from VQSegCore.errors import InputError
from VQSegCore.train.loop import _check_out_folder
from VQSegCore.train.settings import (
    FINETUNE,
    RESUME_KEYS,
    STEP_FIELDS,
    TRAINING,
    TrainingSettings,
    add_arguments,
    from_arguments,
    legacy_record,
)


def _parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_arguments(parser, command)
    return parser


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_every_field_of_a_command_is_a_flag_and_nothing_else_is(command):
    options = {action.dest for action in _parser(command)._actions if action.dest != "help"}
    shown = {item.name for item in dataclasses.fields(TrainingSettings) if command in item.metadata["commands"]}
    assert options == shown
    assert {"iterations", "minutes", "lr", "supervised_warmup", "unlabelled_dice", "strong_views"} <= shown


def test_flags_not_given_keep_the_preset_and_given_ones_replace_it():
    args = _parser("finetune").parse_args(["--minutes", "5", "--lr", "3e-4", "--supervised-only"])
    settings = from_arguments(args, "finetune")
    assert settings == FINETUNE.replace(minutes=5.0, lr=3e-4, supervised_only=True)
    assert from_arguments(_parser("train").parse_args(["--iterations", "7"]), "train") == TRAINING.replace(iterations=7)
    with pytest.raises(InputError, match="train needs --iterations N or --minutes M"):
        from_arguments(_parser("train").parse_args([]), "train")
    with pytest.raises(InputError, match="--lr"):
        from_arguments(_parser("finetune").parse_args(["--minutes", "5", "--lr", "2"]), "finetune")
    with pytest.raises(SystemExit):  # the budget is one or the other
        _parser("train").parse_args(["--iterations", "7", "--minutes", "1"])


def test_presets_hold_the_chosen_values():
    assert (TRAINING.crop_size, TRAINING.lr, TRAINING.unlabelled_batch, TRAINING.supervised_warmup) == (128, 1e-3, 8, 0.0)
    assert (FINETUNE.crop_size, FINETUNE.lr, FINETUNE.unlabelled_batch, FINETUNE.supervised_warmup) == (96, 1e-4, 4, 0.7)
    assert FINETUNE.replace(batch_size=3).unlabelled_batch == 1 and FINETUNE.replace(batch_size=1).unlabelled_batch == 1
    assert FINETUNE.replace(unlabelled_batch_size=6).unlabelled_batch == 6
    assert FINETUNE.step_keywords == {"unlabelled_dice": 0.0, "strong_views": 2} and TRAINING.step_keywords == {}


@pytest.mark.parametrize("changes, named", [
    ({"iterations": None}, "--minutes"), ({"iterations": 0}, "--iterations"), ({"minutes": -1.0}, "--minutes"),
    ({"batch_size": 0}, "batch sizes"), ({"lr": 1.5}, "--lr"), ({"supervised_warmup": 1.0}, "--supervised-warmup"),
    ({"validation_share": 0.0}, "validation share"), ({"foreground_fraction": 1.2}, "--foreground-fraction"),
    ({"precision": "fp8"}, "precision"), ({"strong_views": 3}, "--strong-views"), ({"unlabelled_dice": -1.0}, "--unlabelled-dice"),
    ({"optimiser": "adam"}, "--optimiser"), ({"confidence_threshold": 1.0}, "--confidence-threshold"), ({"initial_model": "/no/such/model"}, "--initial-model"),
])
def test_bad_values_are_input_errors_naming_the_flag(changes, named):
    with pytest.raises(InputError, match=named):
        TRAINING.replace(iterations=10).replace(**changes).check()


def test_record_round_trips_and_keeps_the_run_json_layout():
    settings = FINETUNE.replace(iterations=20, step_options={"loss_weights": "paper"})
    record = settings.record()
    assert record["step_options"] == {"loss_weights": "paper", "unlabelled_dice": 0.0, "strong_views": 2}
    assert not set(STEP_FIELDS) & set(record) and "validate_every" not in record
    assert record["unlabelled_batch_size"] == 4
    assert json.loads(json.dumps(record)) == record  # plain JSON values
    assert set(RESUME_KEYS) <= set(record)


def test_old_run_json_reads_with_the_settings_of_its_time():
    old = {"batch_size": 4, "step_options": {"unlabeled_dice": 0.5}}
    assert legacy_record(old) == {"batch_size": 4, "step_options": {"unlabelled_dice": 0.5}, "supervised_warmup": 0.0,
                                  "unlabelled_batch_size": 4, "weight_decay": 1e-4, "foreground_fraction": 0.5}


def test_resume_refuses_each_changed_setting_and_names_it(tmp_path):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    base = {"config": {}, "world_size": 1, **TRAINING.replace(iterations=10).record()}
    (tmp_path / "run.json").write_text(json.dumps(base))
    _check_out_folder(tmp_path, dict(base), resume=True)
    changed = {"lr": 0.5, "crop_size": 64, "foreground_fraction": 0.9, "weight_decay": 0.0, "step_options": {"strong_views": 1}}
    changed_threshold = TRAINING.replace(iterations=10, confidence_threshold=0.9).record()["step_options"]
    assert changed_threshold == {"confidence_threshold": 0.9}  # a step setting travels in step_options
    changed["step_options"] = changed_threshold
    assert set(changed) <= set(RESUME_KEYS)
    for key, value in changed.items():
        with pytest.raises(InputError, match=key):
            _check_out_folder(tmp_path, {**base, key: value}, resume=True)
    _check_out_folder(tmp_path, {**base, "validate_every": 5}, resume=True)  # how often to validate may change



def test_precision_names_are_the_compute_table_without_importing_torch_at_start_up():
    import subprocess
    import sys

    from VQSegCore.compute import PRECISION_DTYPES
    from VQSegCore.train.settings import PRECISIONS

    assert PRECISIONS == tuple(PRECISION_DTYPES)
    probe = "import sys, VQSegCore.cli.app; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_every_step_setting_is_a_keyword_of_the_step():
    import inspect

    from VQSegCore.train.step import SemiSupervisedStep

    assert set(STEP_FIELDS) <= set(inspect.signature(SemiSupervisedStep).parameters)
    assert "confidence_threshold" in STEP_FIELDS
