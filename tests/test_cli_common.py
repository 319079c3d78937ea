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
