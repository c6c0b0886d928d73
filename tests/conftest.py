import os
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tiny_models import tiny_clip

from inference_scaling.__main__ import CONF_DIR
from inference_scaling.config import register

register()


def make_config(*overrides: str):
    """The typed job config the CLI would build from these overrides."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return OmegaConf.to_object(compose(config_name="config", overrides=list(overrides)))


@pytest.fixture
def config():
    return make_config


@pytest.fixture(scope="module")
def flow():
    """The committed digits flow model behind the denoiser contract."""
    from inference_scaling.models.digits import DigitsDenoiser, load_flow

    return DigitsDenoiser(load_flow())


@pytest.fixture(scope="module")
def verifier():
    """The digits IS-oracle analog (the committed classifier's probability of the condition's class)."""
    from inference_scaling.verifiers import build_verifier

    return build_verifier("classifier_prob")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks run fastest on one thread, and are then not slowed down by other work on the machine:
    on a busy 2-core machine a descheduled intra-op thread stalls every parallel region."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory):
    """A 1-layer tiny CLIP saved as a transformers folder (weights, config, tokenizer), as a hub id would load."""
    folder = tmp_path_factory.mktemp("clip")
    model, tokenizer = tiny_clip(layers=1)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one intra-op thread each
    torch.set_num_threads(1)


@pytest.fixture
def run_main(tmp_path, monkeypatch, capsys):
    """Run the entry point on a command line in an empty folder; returns (exit code, stderr lines)."""
    from inference_scaling.__main__ import main

    monkeypatch.chdir(tmp_path)

    def run(args: list[str]) -> tuple[int, list[str]]:
        quiet = [] if any(a.startswith("logger=") for a in args) else ["logger=none"]
        monkeypatch.setattr(sys, "argv", ["inference-scaling", *args, *quiet, "progress=false"])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err.strip().splitlines()

    return run
