"""Hostile and mistaken command lines through the console script's entry point (`inference_scaling.__main__.main`,
run in this process: its refusals come before Hydra starts a job, so a subprocess per case is not needed; the
subprocess path is covered in test_cli.py). Each must exit with code 2, print exactly one line naming the bad value,
print no traceback, and write no output folder."""

import sys

import pytest
import torch

from inference_scaling.__main__ import main

TEXT = ["model=flux_dev", "benchmark=prompts", "benchmark.prompts=[a red cube]", "verifier=clip_score",
        "budget=one_sample"]
IMAGENET = ["model=sit_xl2", "benchmark=imagenet", "verifier=clip_zeroshot", "budget=one_sample"]
SCENES = ["model=scenes", "benchmark=scenes", "verifier=scene_checker"]

CASES = [
    # unknown options and keys
    (["model=nope"], "unknown model 'nope'; choose one of: digits, dit_xl2"),
    (["verifier=nope"], "unknown verifier 'nope'; choose one of: aesthetic"),
    (["search=nope"], "unknown search 'nope'; choose one of: adaptive, evolutionary"),
    (["benchmark=nope"], "unknown benchmark 'nope'; choose one of: digits, drawbench, geneval, imagenet, prompts, "
                          "scenes, t2i_compbench"),
    (["budget=nope"], "unknown budget 'nope'; choose one of: default, one_sample"),
    (["logger=nope"], "unknown logger 'nope'; choose one of: none, wandb"),
    (["model=base_model"], "unknown model 'base_model'; choose one of:"),  # schemas are not options
    (["model.typo=3"], "unknown config key 'model.typo'; accepted keys in model: name, weights, solver"),
    (["+model.typo=3"], "unknown config key 'model.typo'; accepted keys in model: name, weights, solver"),
    (["++model.typo=3"], "unknown config key 'model.typo'; accepted keys in model: name, weights, solver"),
    (["model=scenes", "+model.typo=3"], "unknown config key 'model.typo'; accepted keys in model: name"),
    ([*IMAGENET, "+model.widht=3"], "unknown config key 'model.widht'; accepted keys in model: name, weights, "
                                    "solver, search_steps, final_steps, guidance, device, dtype, sde_scale, "
                                    "depth"),
    (["search.n=4"], "unknown config key 'search.n'; accepted keys in search: name, max_batch_size"),
    (["budget.nfe=abc"], "bad override budget.nfe=abc"),
    (["~label", "progress=false"], "bad override ~label: Could not delete from config. 'label' does not exist."),
    # ranges and types
    (["budget.nfe=0"], "budget.nfe=0 must be a positive number of NFEs per condition"),
    (["budget.nfe=2"], "budget.nfe=2 is below the cost of one sample (3 NFEs"),
    (["model.solver=rk4"], "model.solver='rk4' is not a solver; choose one of: euler, heun, heun2"),
    (["model.search_steps=0"], "model.search_steps=0 must be >= 1"),
    (["model.final_steps=0"], "model.final_steps=0 must be >= 1"),
    (["model.guidance=-1"], "model.guidance=-1.0 must be >= 0.0"),
    (["model.dtype=int8"], "model.dtype='int8' is not supported; choose one of: float32, bfloat16, float16"),
    (["model.device=tpu"], "model.device='tpu' is not a device"),
    (["search.max_batch_size=0"], "search.max_batch_size=0 must be >= 1"),
    (["benchmark.per_class=0"], "benchmark.per_class=0 must be >= 1"),
    (["benchmark.kid_subset_size=1"], "benchmark.kid_subset_size=1 must be >= 2"),
    (["logger.backend=tensorboard"], "logger.backend='tensorboard'; choose one of: wandb, none"),
    (["logger.wandb.mode=sometimes"], "logger.wandb.mode='sometimes'; choose one of: offline, online, disabled"),
    # components that do not fit together
    (["benchmark=scenes"], "model=digits takes digits conditions but benchmark=scenes gives scenes conditions"),
    (["model=scenes"], "model=scenes takes scenes conditions but benchmark=digits gives digits conditions"),
    (["verifier=scene_checker"], "verifier=scene_checker does not score benchmark=digits; it scores: scenes"),
    (["benchmark=prompts", "benchmark.prompts=[a cat]"], "model=digits takes digits conditions but benchmark=prompts"),
    ([*TEXT[:2], *TEXT[3:]], "benchmark: benchmark=prompts needs prompts"),
    ([*IMAGENET, "benchmark.classes=[3,1000]"], "benchmark: benchmark.classes has 1000, not an ImageNet class index"),
    ([*SCENES, "benchmark.counts=[9]"], "benchmark: count 9 is out of range; counts are 1..6"),
    ([*SCENES, "benchmark.relations=[up]"], "benchmark: unknown relation 'up'; choose one of: left, right"),
    (["verifier=ssl_digits"], "verifier=ssl_digits reads the x0-prediction at the search grid's level nearest sigma="),
    (["verifier=ssl_digits", "model.search_steps=4", "verifier.sigma=1.5"], "verifier.sigma=1.5 must lie in (0, 1)"),
    (["verifier=ssl_digits", "model.search_steps=4", "search=paths", "budget.nfe=96"],
     "verifier=ssl_digits compares each candidate's x0-prediction with its final sample, but search=paths"),
    (["benchmark.metrics=[{name: nope}]"], "benchmark.metrics[0].name='nope' is unknown"),
    (["benchmark.metrics=[{name: ensemble}]"], "benchmark.metrics[0]: ensemble scores candidates relative to each"),
    ([*SCENES, "benchmark.prompts=['3 blocks, most on the left']", "benchmark.per_class=2"],
     "benchmark=scenes gives 2 condition(s); its evaluation needs at least 4"),
    ([*SCENES, "benchmark.counts=[]"], "benchmark=scenes gives no conditions"),
    (["verifier=llm_grader", "verifier.base_url=https://api.example.com/v1", "verifier.api_key_env=IS_TEST_NO_KEY"],
     "verifier.base_url=https://api.example.com/v1 needs an API key, but the environment variable IS_TEST_NO_KEY"),
    # search plans and parameters
    (["search=zero_order"], "budget.nfe=12 buys 4 sample(s); zero-order search needs 1 + N = 5"),
    (["search=zero_order", "search.n=0", "budget.nfe=96"], "search.n=0 must be >= 1 neighbour per iteration"),
    (["search=paths", "search.delta_f=0.5", "search.delta_b=0.4", "budget.nfe=96"],
     "need 0 < search.delta_f < search.delta_b"),
    # weights, folders and checkpoints
    (["model.weights=/nonexistent/flow.safetensors"], "model.weights: weights file '/nonexistent/flow.safetensors'"),
    (["verifier.weights=/nonexistent/c.safetensors"], "verifier.weights: weights file '/nonexistent/c.safetensors'"),
    (["model=sit_b2", *IMAGENET[1:]], "model.weights is empty: sit_b2 has no public checkpoint"),
    ([*IMAGENET, "model.hidden_size=1000"], "model.hidden_size=1000 must be a multiple of model.num_heads=16"),
    ([*TEXT, "model.weights=/nonexistent/flux"], "model.weights='/nonexistent/flux' is neither an existing folder"),
    ([*IMAGENET, "model.vae=./no/such/vae"], "model.vae='./no/such/vae' is neither an existing folder nor a hub id"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a)[-60:] for a, _ in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_main, tmp_path, args, message):
    code, lines = run_main([*args, f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: " + message), lines[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "outputs").exists()


def test_at_least_forty_bad_inputs_are_covered():
    assert len(CASES) >= 40


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda(run_main, tmp_path):
    code, lines = run_main(["model.device=cuda", f"hydra.run.dir={tmp_path / 'run'}"])
    assert code == 2 and lines == ["error: model.device=cuda but this machine has no CUDA device; use model.device=cpu"]


def test_an_output_folder_that_is_a_file_or_cannot_be_made(run_main, tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    code, lines = run_main([f"hydra.run.dir={tmp_path / 'taken'}"])
    assert code == 2 and lines == [f"error: hydra.run.dir={tmp_path / 'taken'} is a file, not a folder; give a "
                                   f"folder to write the job into"]
    code, lines = run_main(["-m", "budget.nfe=3,6", f"hydra.sweep.dir={tmp_path / 'taken' / 'sweep'}"])
    assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: hydra.sweep.dir={tmp_path / 'taken' / 'sweep'}"
                                                                 f" cannot be created: {tmp_path / 'taken'} is not")


def test_a_bad_value_anywhere_in_a_sweep_fails_the_whole_sweep_up_front(run_main, tmp_path):
    code, lines = run_main(["-m", "budget.nfe=3,6,2", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: budget.nfe=2 is below the cost")
    assert not (tmp_path / "sweep").exists()


def test_a_job_of_a_glob_sweep_is_refused_when_it_starts(run_main, tmp_path):
    """glob() cannot be enumerated before Hydra lists the options: its jobs validate themselves, in one line."""
    code, lines = run_main(["-m", "model=glob(sc*)", "benchmark.per_class=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    assert code == 1
    assert_one_job_error(lines, "error: model=scenes takes scenes conditions but benchmark=digits gives digits "
                                "conditions; models for it: digits")
    assert not list((tmp_path / "sweep").rglob("metrics.json"))


def assert_one_job_error(lines: list[str], message: str) -> None:
    """A job's error: its one line, framed only by Hydra's line naming the job's overrides and its hint about
    HYDRA_FULL_ERROR; no traceback."""
    text = [line for line in lines if line.strip()]
    assert [line for line in text if line.startswith("error:")] == [message], lines
    assert text[0].startswith("Error executing job with overrides: [") and text[-1].startswith(
        "Set the environment variable HYDRA_FULL_ERROR=1"), lines
    assert len(text) == 3 and not any("Traceback" in line for line in lines), lines


def test_a_job_error_is_one_line_under_submitit(tmp_path):
    """Under submitit a job runs in another process; its error must still reach the user as its one line."""
    from test_cli import cli

    proc = cli("-m", "hydra/launcher=submitit_local", "model=glob(sc*)", "benchmark.per_class=1", "logger=none",
               "progress=false", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path)
    assert proc.returncode == 1
    assert_one_job_error(proc.stderr.splitlines(), "error: model=scenes takes scenes conditions but benchmark=digits "
                                                   "gives digits conditions; models for it: digits")
    assert not list((tmp_path / "sweep").rglob("metrics.json"))


def test_sweeps_that_cannot_be_enumerated_are_left_to_their_jobs():
    from inference_scaling.__main__ import precheck

    assert precheck(["budget.nfe=interval(3,9)"]) == 0  # a sweeper plugin's syntax: Hydra's (or the plugin's) work
    assert precheck(["model=glob(dig*)", "budget.nfe=3,6"]) == 0
    assert precheck(["budget.nfe=range(3,10,3)", "++seed=5"]) == 3


def test_force_add_user_config_dirs_and_search_paths_compose_as_in_hydra(run_main, tmp_path):
    import shutil

    from inference_scaling.__main__ import CONF_DIR

    mine = tmp_path / "myconf"
    shutil.copytree(CONF_DIR, mine, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    (mine / "budget" / "tiny.yaml").write_text("defaults:\n  - /base_budget@_here_\nnfe: 3\n")
    extra = tmp_path / "extra" / "benchmark"
    extra.mkdir(parents=True)
    (extra / "few.yaml").write_text("defaults:\n  - digits\n  - _self_\nper_class: 1\n")
    for args in (["-cd", str(mine), "budget=tiny", "benchmark.per_class=1", "++seed=7"],
                 [f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "benchmark=few", "budget.nfe=3"]):
        run_dir = tmp_path / f"run{len(args)}"
        code, lines = run_main([*args, f"hydra.run.dir={run_dir}"])
        assert code == 0, lines
        metrics = (run_dir / "metrics.json").read_text()
        assert '"n_conditions": 10' in metrics and '"nfe": 3' in metrics


def test_hydra_full_error_shows_the_traceback(run_main, tmp_path, monkeypatch):
    from inference_scaling.nfe import BudgetError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(BudgetError, match="budget.nfe=0 must be a positive number"):
        monkeypatch.setattr(sys, "argv", ["inference-scaling", "budget.nfe=0", f"hydra.run.dir={tmp_path / 'run'}"])
        main()
