"""The model adapter contract on the embedded models, the benchmarks that pair with models by condition kind, and
the shared helpers of the latent backends (prompt-embedding cache, decode counter, device and dtype checks)."""

import pytest
import torch

from inference_scaling.benchmarks import BENCHMARKS, Conditions
from inference_scaling.config import ConfigError, search_cost, search_sigmas, validate
from inference_scaling.denoiser import EmbeddedConditions, GuidedDenoiser, cat_rows, expand_rows
from inference_scaling.models import MODELS, load_model, model_class
from inference_scaling.models.text import PromptEmbeddings
from inference_scaling.nfe import DecodeCounter, NFECounter
from inference_scaling.sampling import heun2, linear_sigmas, solver_nfe


def test_embedded_adapter_is_the_network_with_identity_decode(config):
    cfg = config()
    model = load_model(cfg.model)
    conditions = BENCHMARKS["digits"](cfg.benchmark).conditions()
    rows = model.encode(conditions)
    assert torch.equal(rows, conditions.labels) and model.noise_shape == (1, 8, 8)
    x, sigma = torch.randn(4, 1, 8, 8), torch.full((4,), 0.5)
    assert torch.equal(model(x, sigma, rows[:4]), model.net(x, sigma, rows[:4]))
    assert model.decode(x) is x and not model.decodes
    assert torch.equal(search_sigmas(cfg.model), linear_sigmas(cfg.model.search_steps))


def test_declared_guidance_cost_is_what_the_counter_counts(config):
    cfg = config("model.guidance=2.0")
    model = load_model(cfg.model)
    assert model_class("digits").evals_per_call(cfg.model) == 2 and search_cost(cfg.model) == 6
    counter = NFECounter(model)
    denoiser = model.guided(counter, cfg.model.guidance)
    assert isinstance(denoiser, GuidedDenoiser)
    denoiser(torch.randn(5, 1, 8, 8), torch.full((5,), 0.3), torch.arange(5))
    assert counter.count == 10
    assert model.guided(counter, 1.0) is counter  # w = 1: the conditional network itself, 1 NFE


def test_bfloat16_network_returns_float32_close_to_float32(config):
    cfg32, cfg16 = config(), config("model.dtype=bfloat16")
    x, sigma, cond = torch.randn(8, 1, 8, 8), torch.full((8,), 0.7), torch.arange(8)
    v32, v16 = load_model(cfg32.model)(x, sigma, cond), load_model(cfg16.model)(x, sigma, cond)
    assert v16.dtype == torch.float32 and not torch.equal(v16, v32)
    assert (v16 - v32).abs().max() < 0.1 * v32.abs().max()


@pytest.mark.parametrize("override,message", [
    ("model.dtype=int8", "model.dtype='int8' is not supported; choose one of: float32, bfloat16, float16"),
    ("model.device=tpu", "model.device='tpu' is not a device"),
])
def test_bad_dtype_or_device_is_refused(config, override, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        validate(config(override))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_one_line(config):
    with pytest.raises(ConfigError, match="^model.device=cuda but this machine has no CUDA device; use model.device=cpu$"):
        validate(config("model.device=cuda"))


def test_every_registered_model_declares_a_condition_kind_and_a_grid_ending_at_zero(config):
    for name in MODELS:
        cls = model_class(name)
        assert cls.condition_kind in ("digits", "scenes", "imagenet", "prompts"), name
    with pytest.raises(ValueError, match="model.name='nope' is unknown; choose one of: "):
        model_class("nope")


def test_heun2_corrects_the_last_step_too():
    calls = []

    def velocity(x, sigma, cond):
        calls.append(float(sigma[0]))
        return -x

    x = heun2(velocity, torch.ones(2, 1), linear_sigmas(3), torch.zeros(2))
    assert len(calls) == solver_nfe("heun2", linear_sigmas(3)) == 6 and calls[-1] == 0.0
    exact = torch.exp(torch.tensor(1.0))  # dx/dσ = −x from σ = 1 to 0: x(0) = e·x(1)
    assert abs(float(x[0]) - exact) < 0.05


def test_embedded_conditions_index_expand_and_concatenate_like_a_tensor():
    rows = EmbeddedConditions({"seq": torch.arange(12.0).view(3, 2, 2), "pooled": torch.arange(3.0).view(3, 1)})
    assert len(rows) == 3 and torch.equal(rows[torch.tensor([2, 0])].tensors["pooled"], torch.tensor([[2.0], [0.0]]))
    both = cat_rows(rows, expand_rows(rows[[1]], 3))
    assert len(both) == 6 and torch.equal(both.tensors["seq"][3:], rows.tensors["seq"][[1, 1, 1]])


def test_imagenet_benchmark_is_class_balanced_and_refuses_bad_classes(config):
    cfg = config("benchmark=imagenet", "benchmark.classes=[1,207]", "benchmark.per_class=2")
    conditions = BENCHMARKS["imagenet"](cfg.benchmark).conditions()
    assert conditions.labels.tolist() == [1, 207, 1, 207] and conditions.prompts[:2] == ["goldfish", "Golden Retriever"]
    assert len(BENCHMARKS["imagenet"](config("benchmark=imagenet").benchmark).conditions().ids) == 1000
    with pytest.raises(ValueError, match="benchmark.classes has 1000, not an ImageNet class index; use 0..999"):
        BENCHMARKS["imagenet"](config("benchmark=imagenet", "benchmark.classes=[5,1000]").benchmark).conditions()


def test_prompts_benchmark_from_list_or_file(config, tmp_path):
    listed = BENCHMARKS["prompts"](config("benchmark=prompts", "benchmark.prompts=[a cat,a dog]",
                                          "benchmark.per_class=2").benchmark).conditions()
    assert listed.prompts == ["a cat", "a dog", "a cat", "a dog"] and listed.ids.tolist() == [0, 1, 2, 3]
    file = tmp_path / "prompts.txt"
    file.write_text("a red cube\n\n  two birds  \n", encoding="utf-8")
    from_file = BENCHMARKS["prompts"](config("benchmark=prompts", f"benchmark.prompts_file={file}").benchmark)
    assert from_file.conditions().prompts == ["a red cube", "two birds"]
    with pytest.raises(ValueError, match="benchmark=prompts needs prompts"):
        BENCHMARKS["prompts"](config("benchmark=prompts").benchmark).conditions()


def test_a_benchmark_pairs_with_models_by_condition_kind(config):
    with pytest.raises(ConfigError, match="^model=digits takes digits conditions but benchmark=prompts gives prompts "
                                          "conditions; models for it: "):
        validate(config("benchmark=prompts", "benchmark.prompts=[a cat]"))


def test_prompt_embeddings_are_computed_once_per_distinct_prompt_and_cached_on_disk(tmp_path):
    seen = []

    def encoder(prompts):
        seen.extend(prompts)
        return {"seq": torch.stack([torch.full((2, 3), float(len(p))) for p in prompts]),
                "pooled": torch.tensor([[float(ord(p[0]))] for p in prompts])}

    cache = PromptEmbeddings(encoder, key="tiny", cache_dir=str(tmp_path), batch_size=2)
    rows = cache.encode(["a", "bb", "a", "ccc", "bb"])
    assert seen == ["a", "bb", "ccc"] and len(rows) == 5
    assert torch.equal(rows.tensors["seq"][3], torch.full((2, 3), 3.0))
    again = PromptEmbeddings(encoder, key="tiny", cache_dir=str(tmp_path)).encode(["ccc", "a"])
    assert seen == ["a", "bb", "ccc"] and torch.equal(again.tensors["pooled"], torch.tensor([[99.0], [97.0]]))
    PromptEmbeddings(encoder, key="another model", cache_dir=str(tmp_path)).encode(["a"])
    assert seen[-1] == "a" and len(seen) == 4  # the key separates models


def test_decode_counter_records_calls_images_and_time():
    counter = DecodeCounter(lambda x: x * 2)
    assert torch.equal(counter(torch.ones(3, 1)), torch.full((3, 1), 2.0)) and counter(torch.ones(2, 1)).shape == (2, 1)
    record = counter.as_dict()
    assert record["calls"] == 2 and record["images"] == 5 and record["seconds"] >= 0


def test_conditions_keep_labels_apart_from_model_rows():
    conditions = Conditions(torch.tensor([3, 4]), torch.arange(2), ["three", "four"])
    assert conditions.labels.tolist() == [3, 4]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cli_refuses_cuda_and_a_mismatched_benchmark_in_one_line_before_writing(tmp_path):
    from test_cli import cli

    for args, message in [(["model.device=cuda"], "error: model.device=cuda but this machine has no CUDA device"),
                          (["benchmark=prompts", "benchmark.prompts=[a cat]"],
                           "error: model=digits takes digits conditions but benchmark=prompts gives prompts")]:
        proc = cli(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), proc.stderr
        assert not (tmp_path / "run").exists()


def test_benchmark_metrics_score_every_final_image_apart_from_the_verifier(config, tiny_clip_folder, one_thread):

    from inference_scaling.runner import run
    from inference_scaling.verifiers import build_verifier

    cfg = config("benchmark.per_class=2", "budget.nfe=6", "logger=none", "progress=false",
                 f"benchmark.metrics=[{{name: classifier_logit, label: logit}}, {{name: clip_score, label: clip, clip: {tiny_clip_folder}}}]")
    result = run(cfg)
    images, labels = result["images"], torch.arange(10).repeat(2)
    logits = build_verifier("classifier_logit")(images, labels)
    assert result["metrics"]["metric_logit"] == pytest.approx(logits.mean().item(), abs=1e-6)
    assert [r["metric_logit"] for r in result["records"]] == pytest.approx(logits.tolist(), abs=1e-6)
    clip = build_verifier(config("verifier=clip_score", f"verifier.clip={tiny_clip_folder}").verifier)
    prompts = [r["prompt"] for r in result["records"]]
    assert result["metrics"]["metric_clip"] == pytest.approx(clip(images, prompts).mean().item(), abs=1e-6)
    assert result["metrics"]["verifier_score"] != result["metrics"]["metric_logit"]  # p(class) vs its logit


@pytest.mark.parametrize("metrics,message", [
    ("[{name: nope}]", "benchmark.metrics[0].name='nope' is unknown; choose one of: "),
    ("[{name: clip_score, clipp: x}]", "benchmark.metrics[0]: Key 'clipp' not in 'ClipScoreConfig'"),
    ("[{name: ensemble}]", "benchmark.metrics[0]: ensemble scores candidates relative to each other"),
    ("[{name: ssl_digits}]", "benchmark.metrics[0]: ssl_digits reads x0-predictions"),
    ("[{name: scene_checker}]", "benchmark.metrics[0]: scene_checker does not score benchmark=digits"),
    ("[3]", "benchmark.metrics[0]=3 must be a verifier's name or its fields with its name"),
    ("[{name: classifier_logit}, {name: classifier_logit}]", "benchmark.metrics[1]: label 'classifier_logit' is taken"),
])
def test_bad_metrics_are_refused_in_one_line(config, metrics, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate(config(f"benchmark.metrics={metrics}"))
