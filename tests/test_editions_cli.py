"""Both trainers' flags beyond 2021 (--activation, --use_layer_norm, --dropout, --optimizer ...): they
train the network they name, refuse bad values in one line, and leave 2021's defaults alone."""

import json
import os

import numpy as np
import pytest
from test_cli import SCRIPTS, device_args, finish, one_error_line, start, tiny_args

import train_mlp_numpy as tm
from support import checks, cli

BAD = {
    "activation": (["--activation", "tanh"], "invalid choice"),
    "optimizer": (["--optimizer", "adagrad"], "invalid choice"),
    "dropout_one": (["--dropout", "1"], "dropout must be in [0, 1)"),
    "momentum_negative": (["--optimizer", "momentum", "--momentum", "-0.5"], "momentum and weight_decay"),
    "both_norms": (["--use_batch_norm", "--use_layer_norm"], "exclude each other"),
}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("case", list(BAD))
def test_bad_values_are_one_line_and_exit_code_2(script, case, data_dir, tmp_path):
    extra, fragment = BAD[case]
    code, _, stderr = finish(
        start(script, [*tiny_args(tmp_path / "out", *extra, data_dir=data_dir), *device_args(script)])
    )
    assert code == 2
    one_error_line(stderr, script, fragment)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_elu_adam_layer_norm_dropout_trains_and_is_logged(script, data_dir, tmp_path):
    extra = ["--activation", "elu", "--alpha", "0.5", "--optimizer", "adam", "--lr", "1e-3"]
    extra += ["--use_layer_norm", "--dropout", "0.2"]
    out = tmp_path / "out"
    code, stdout, stderr = finish(
        start(script, [*tiny_args(out, *extra, data_dir=data_dir), *device_args(script)])
    )
    assert code == 0, stderr
    log = json.loads((out / "log.json").read_text())
    assert log["args"]["activation"] == "elu" and log["args"]["optimizer"] == "adam"
    assert log["args"]["use_layer_norm"] is True and log["args"]["dropout"] == 0.2
    assert np.isfinite(log["logging_info"]["batch_loss"]).all()


def test_default_output_folders_name_what_differs_from_2021():
    parser = cli.build_parser("x", "mlp_numpy")
    assert cli._run_suffix(parser.parse_args([])) == ""
    assert cli._run_suffix(parser.parse_args(["--use_batch_norm"])) == "_batch_norm"
    args = parser.parse_args(["--activation", "elu", "--optimizer", "adam", "--dropout", "0.5"])
    assert cli._run_suffix(args) == "_elu_dropout0.5_adam"


def test_the_flags_reach_train_as_its_keywords():
    kwargs = cli.train_arguments(
        cli.build_parser("x", "mlp_numpy").parse_args(["--activation", "leaky_relu"])
    )
    assert (
        kwargs["activation"] == "leaky_relu" and kwargs["neg_slope"] == 0.01 and kwargs["optimizer"] == "sgd"
    )
    assert kwargs["dtype"] == np.float32 and kwargs["progress"] is True


def test_each_optimizer_name_is_one_rule_of_optim_and_of_torch_optim():
    import torch

    import optim

    for name in checks.OPTIMIZERS:
        _, rule, rule_options = checks.split_options(optimizer=name, momentum=0.9, weight_decay=1e-4)
        assert hasattr(optim, rule) and hasattr(torch.optim, rule)
        assert rule_options["weight_decay"] == 1e-4
        assert ("momentum" in rule_options) == (name == "momentum")
    # 2021: plain SGD, no extra keyword at all
    assert checks.split_options() == ({}, "SGD", {})


def test_numpy_train_refuses_a_bad_option_before_reading_data(tmp_path):
    with pytest.raises(ValueError, match="activation must be one of"):
        tm.train([8], 0.1, 32, 1, 0, os.fspath(tmp_path / "nothing"), activation="sigmoid")
