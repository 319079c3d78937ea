"""Broken registries and checkpoints (issue 11, items 8 and 9): each is one InputFileError
naming the file, at inference and before a training starts; never a KeyError, a
UnicodeDecodeError, a "size mismatch" traceback or an all-NaN probability file."""

import json

import pytest
import torch
import trainkit

from pqpf.errors import InputFileError
from pqpf.hparams import load_hparams
from pqpf.io.checkpoint import load_checkpoint
from pqpf.layout import registry_path
from pqpf.stages.inference import load_model_for_lead
from pqpf.stages.train import train_resunet

TINY = load_hparams("tiny")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    config = trainkit.make(tmp_path_factory.mktemp("registry"))
    result = train_resunet(config, trainkit.INIT, trainkit.LEAD, TINY, device="cpu", max_epochs=1)
    return config, result.best_checkpoint


@pytest.fixture
def registry(trained):
    """The registry file; restored after each test."""
    config, _ = trained
    path = registry_path(config)
    saved = path.read_bytes()
    yield path
    path.write_bytes(saved)


@pytest.mark.parametrize("content, words", [
    (b'{"format": "pqpf-registry", "models": {"resunet": {"6": {"checkpoint": "\xff\xfe"}}}}', "not UTF-8 text"),
    (b'{"six": {"checkpoint": "x/best.pt"}}', "registry lead 'six' of 'resunet' is not a whole number of hours"),
    (b'{"6.5": {"checkpoint": "x/best.pt"}}', "is not a whole number of hours"),
    (b'{"6": {}}', "registry entry resunet/6 has no 'checkpoint'"),
    (b'[1, 2]', "registry must be a JSON object"),
    (b'{"6": ', "unreadable registry"),
])
def test_a_broken_registry_is_one_error_naming_it_at_inference(trained, registry, content, words):
    config, _ = trained
    registry.write_bytes(content)
    with pytest.raises(InputFileError) as exc:
        load_model_for_lead(config, trainkit.LEAD, torch.device("cpu"))
    assert str(registry) in str(exc.value) and words in str(exc.value) and "\n" not in str(exc.value)


def test_a_broken_registry_stops_training_before_the_first_epoch(trained, registry, capsys):
    from pqpf.cli import train_resunet as cli

    config, _ = trained
    registry.write_bytes(b'{"six": {"checkpoint": "x/best.pt"}}')
    def run_folders():
        return sorted(p.name for p in config.paths.trainings_dir.iterdir() if p.is_dir())

    before = run_folders()
    status = cli.main([trainkit.INIT.strftime("%Y%m%d%H"), "3", "--config", str(config.source),
                       "--hparams-name", "tiny", "--device", "cpu", "--max-epochs", "1", "-q"])
    err = capsys.readouterr().err
    assert status == 1 and err.count("\n") == 1 and "registry lead 'six'" in err and str(registry) in err
    assert run_folders() == before  # no run folder for +3 h


def _rewrite(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


@pytest.mark.parametrize("name, change, words", [
    ("missing hparams", lambda s: s["model"].pop("hparams"), "hparams"),
    ("NaN weights", lambda s: s["net"][next(iter(s["net"]))].fill_(float("nan")), "is not finite"),
    ("a wrong tensor shape", lambda s: s["net"].update({k: torch.zeros(3, 3) for k in list(s["net"])[:1]}),
     "weights do not fit the network"),
    ("not a checkpoint", lambda s: s.clear(), "checkpoint"),
])
def test_a_broken_checkpoint_is_one_error_naming_it(trained, tmp_path, name, change, words):
    config, best = trained
    saved = best.read_bytes()
    try:
        _rewrite(best, change)
        with pytest.raises(InputFileError) as exc:
            load_model_for_lead(config, trainkit.LEAD, torch.device("cpu"))
        message = str(exc.value)
        assert str(best) in message and words in message and "\n" not in message, (name, message)
    finally:
        best.write_bytes(saved)
    load_checkpoint(best)  # restored


def test_the_registry_written_by_training_reads_back(trained):
    config, best = trained
    data = json.loads(registry_path(config).read_text())
    assert data["format"] == "pqpf-registry" and data["models"]["resunet"][str(trainkit.LEAD)]["checkpoint"]
    assert load_model_for_lead(config, trainkit.LEAD, torch.device("cpu")).checkpoint == best
