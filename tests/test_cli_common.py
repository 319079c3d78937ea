from pathlib import Path

import pytest

from pqpf.cli.common import add_init_lead, build_parser, check_lead, load_config_from_args, run_cli


def make(tmp_path):
    parser = build_parser("tool.py", "test tool", script_dir=tmp_path.parent)
    add_init_lead(parser)
    return parser


def test_impossible_date_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(make(tmp_path), lambda a: 0, ["2025023100", "12"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "2025023100" in err and err.startswith("tool.py: error:")


def test_lead_outside_config_range_is_exit_2(tmp_path, capsys):
    from pathlib import Path
    cfg = Path(__file__).resolve().parent.parent / "config_laptop.ini"

    def body(args):
        check_lead(load_config_from_args(args), args.lead)
        return 0

    assert run_cli(make(tmp_path), body, ["--config", str(cfg), "2025120100", "99"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "tool.py: error: lead 99 h is outside the configured range 1..48 h"


def test_missing_config_is_one_line_exit_1(tmp_path, capsys):
    status = run_cli(make(tmp_path), lambda a: load_config_from_args(a) and 0,
                     ["--config", str(tmp_path / "none.ini"), "2025120100", "6"])
    assert status == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "none.ini: configuration file not found" in err


@pytest.mark.parametrize("argv, fragment", [
    (["2025120100", "1_2"], "lead must be a whole number of hours, got '1_2'"),   # int() reads 12
    (["2025120100", " 6"], "lead must be a whole number of hours"),
    (["2025120100", "６"], "lead must be a whole number of hours"),                # a full-width digit
    (["2025120100", "-3"], "lead must not be negative"),
])
def test_lead_is_plain_decimal_digits_or_a_usage_error(tmp_path, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        run_cli(make(tmp_path), lambda a: 0, argv)
    assert exc.value.code == 2 and fragment in capsys.readouterr().err


@pytest.mark.parametrize("flag, value, fragment", [
    ("--max-epochs", "0", "expected at least 1, got 0"),
    ("--max-epochs", "-1", "expected at least 1, got -1"),
    ("--max-epochs", "1_0", "expected a whole number, got '1_0'"),
])
def test_training_counts_are_usage_errors_before_anything_is_touched(tmp_path, capsys, flag, value, fragment):
    from pqpf.cli import train_resunet

    with pytest.raises(SystemExit) as exc:
        train_resunet.main(["--config", str(tmp_path / "none.ini"), "2025120100", "6", flag, value])
    assert exc.value.code == 2 and fragment in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_device_is_a_usage_error_before_the_run_folder_is_touched(tmp_path, capsys):
    import trainkit

    from pqpf.cli import train_resunet
    from pqpf.layout import training_run_dir

    config = trainkit.make(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    status = train_resunet.main(["--config", str(config.source), "2025120100", "6", "--device", "foo", "-q"])
    assert status == 2 and "unknown device 'foo'" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not training_run_dir(config, trainkit.INIT, trainkit.LEAD).exists()


@pytest.mark.parametrize("module", ["train_resunet", "train_diffusion", "resunet_inference", "ensemble_inference"])
def test_every_torch_stage_takes_threads_from_the_flag_else_the_config(module, tmp_path, monkeypatch):
    """Issue 10 item 5: two jobs on 2 cores each taking both ran ~10x slower; no option existed."""
    import dataclasses
    import importlib

    import torch

    from pqpf.cli.common import apply_threads
    from pqpf.config import load_config
    from pqpf.device import available_cpus

    cli = importlib.import_module(f"pqpf.cli.{module}")
    config = load_config(Path(__file__).resolve().parent.parent / "config_laptop.ini")
    before = torch.get_num_threads()
    try:
        parser = cli.build_parser()
        args = parser.parse_args(["2025120100", "6", "--threads", "1"])
        assert apply_threads(args, dataclasses.replace(config, compute=dataclasses.replace(config.compute, threads=2)))\
            == 1 == torch.get_num_threads()
        args = parser.parse_args(["2025120100", "6"])
        assert apply_threads(args, dataclasses.replace(config, compute=dataclasses.replace(config.compute, threads=1)))\
            == 1 == torch.get_num_threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: the node's CPUs are shared by its ranks
        assert apply_threads(args, config) == max(available_cpus() // 2, 1) == torch.get_num_threads()
        with pytest.raises(SystemExit):
            parser.parse_args(["2025120100", "6", "--threads", "-1"])
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("text, value", [("0", 0.0), ("2.5", 2.5), ("40", 40.0), ("1e1", 10.0)])
def test_non_negative_float_accepts_finite_amounts(text, value):
    from pqpf.cli.common import non_negative_float

    assert non_negative_float(text) == value


@pytest.mark.parametrize("text", ["-0.1", "nan", "inf", "ten", ""])
def test_non_negative_float_refuses_with_the_text(text):
    import argparse
    import re

    from pqpf.cli.common import non_negative_float

    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
        non_negative_float(text)


def test_smoothing_px_takes_lengths_and_inf_and_refuses_the_rest_with_the_text():
    import argparse
    import math
    import re

    from pqpf.cli.common import smoothing_px

    assert smoothing_px("0") == 0.0 and smoothing_px("16") == 16.0 and math.isinf(smoothing_px("inf"))
    for text in ("-1", "nan", "-inf", "wide"):
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(repr(text))):
            smoothing_px(text)
