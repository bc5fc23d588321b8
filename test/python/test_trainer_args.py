"""The TRAINER_ARGS preflights of ultralytics and transformers: keys read from the installed
framework, values checked and coerced by the framework's own validation, problems per key."""

import json

from vision_trainer.huggingface.trainer_args import check as check_hf
from vision_trainer.ultralytics.trainer_args import check as check_ultralytics


def answer(check, args, task_type="image_classification"):
    envelope = json.loads(check({"trainer_args": args, "task_type": task_type}))
    assert "ok" in envelope, envelope
    return envelope["ok"]


def test_ultralytics_keys_come_from_its_default_configuration():
    a = answer(check_ultralytics, {"patience": 3, "mosaic": 0.5, "optimizer": "SGD", "cos_lr": True}, "object_detection")
    assert a == {"resolved": {"patience": 3, "mosaic": 0.5, "optimizer": "SGD", "cos_lr": True}, "problems": []}


def test_ultralytics_unknown_key_lists_the_closest_first_and_bad_values_are_named():
    a = answer(check_ultralytics, {"mosiac": 0.5, "mosaic": "lots", "patience": 3}, "object_detection")
    assert a["resolved"] == {"patience": 3}
    (unknown, bad) = a["problems"]
    assert unknown["key"] == "mosiac"
    assert unknown["message"].startswith("is not a setting of ultralytics' train arguments; valid keys (closest first): mosaic, ")
    assert bad["key"] == "mosaic"
    assert bad["message"].startswith("'lots' is not allowed: ")


def test_transformers_keys_are_the_training_arguments_fields():
    a = answer(check_hf, {"weight_decay": 0.01, "lr_scheduler_type": "linear", "gradient_accumulation_steps": 2})
    # Enums arrive as their values.
    assert a == {"resolved": {"weight_decay": 0.01, "lr_scheduler_type": "linear", "gradient_accumulation_steps": 2}, "problems": []}


def test_transformers_unknown_key_and_a_value_its_own_validation_refuses():
    a = answer(check_hf, {"weight_decai": 0.1, "lr_scheduler_type": "sideways"})
    assert a["resolved"] == {}
    (unknown, bad) = a["problems"]
    assert unknown["key"] == "weight_decai"
    assert unknown["message"].startswith("is not a setting of transformers' TrainingArguments; valid keys (closest first): weight_decay, ")
    assert bad["key"] == "lr_scheduler_type"
    assert "sideways" in bad["message"]
