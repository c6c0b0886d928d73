"""Class-conditional verifiers (IS-oracle, CLIP zero-shot, DINOv2 linear, FID-oracle, self-supervised) on tiny or
randomly initialised networks: real weights cannot be downloaded here, so the checkpoints are written out in the
published layouts and loaded through the same code paths."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import save_file
from torch import nn
from tiny_models import random_inception_weights, tiny_clip

from inference_scaling.datasets import DIGIT_NAMES, load_digits, to_uint8
from inference_scaling.evaluation import reference_stats
from inference_scaling.verifiers.clip_score import ClipEncoder
from inference_scaling.verifiers.clip_zeroshot import (ClipZeroShot, ClipZeroShotConfig, class_text_embeddings,
                                                      read_class_names, zero_shot_logits)
from inference_scaling.verifiers.dino_linear import (DinoBackbone, DinoLinear, DinoLinearConfig, load_linear_head,
                                                    published_head_url)
from inference_scaling.verifiers.fid_oracle import (DigitsFeatures, FidOracle, FidOracleConfig, InceptionFeatures,
                                                   digits_reference, feature_statistics, frechet_distance,
                                                   greedy_fid_search, greedy_fid_selection, load_reference)
from inference_scaling.verifiers.inception_is import (InceptionIS, InceptionISConfig, load_inception, tf_class_index,
                                                     to_uint8_rgb)
from inference_scaling.verifiers.ssl_clip import ClipImageFeatures, SslClip, SslClipConfig
from inference_scaling.verifiers.ssl_digits import SslDigits, SslDigitsConfig
from inference_scaling.verifiers.ssl_dino import DinoClsFeatures, SslDino, SslDinoConfig
from inference_scaling.verifiers.ssl_features import SslFeatures, ssl_score
from inference_scaling.weights import WeightsError


pytestmark = pytest.mark.usefixtures("one_thread")


def images(n: int, c: int = 3, h: int = 16, w: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def perturbed(module: nn.Module, seed: int, scale: float = 0.1) -> nn.Module:
    """timm zero-initialises biases and LayerNorm shifts: make every tensor matter."""
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))
    return module.eval()


# ---------- IS-oracle ----------

@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> str:
    return random_inception_weights(tmp_path_factory.mktemp("inception") / "weights-inception-random.pth")


@pytest.fixture(scope="module")
def inception_is(inception_weights) -> InceptionIS:
    return InceptionIS.from_config(InceptionISConfig(weights=inception_weights, batch_size=4), "cpu")


def test_tf_inception_class_map():
    index = tf_class_index()
    assert sorted(index.tolist()) == list(range(1, 1001))  # outputs 0 and 1001..1007 name no class
    names = read_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[388] == "giant panda"
    # From the graph's imagenet_2012_challenge_label_map_proto.pbtxt: not a shift by one.
    assert index[0] == 449 and index[1] == 450 and index[388] == 169


def test_inception_is_is_the_class_probability(inception_is, inception_weights):
    x, cond = images(3), torch.tensor([0, 388, 999])
    scores = inception_is(x, cond)
    assert scores.shape == (3,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    net = load_inception(inception_weights)
    with torch.no_grad():
        (logits,) = net(to_uint8(x))
    assert logits.shape == (3, 1008)
    probs = logits.double().softmax(-1)
    assert torch.allclose(scores.double(), probs[torch.arange(3), torch.tensor([449, 169, tf_class_index()[999]])],
                          rtol=1e-4)
    assert len(set(scores.tolist())) == 3 and ((scores > 0) & (scores < 1)).all()
    assert not torch.allclose(inception_is(x, torch.tensor([1, 2, 3])), scores)  # the class matters
    assert torch.equal(inception_is(x, cond), scores)  # deterministic
    one_by_one = InceptionIS(inception_is.net, batch_size=1)
    assert torch.allclose(one_by_one(x.flip(0), cond.flip(0)), scores.flip(0), rtol=1e-4)  # batches, input order
    assert one_by_one.cost.calls == 3 and one_by_one.cost.images == 3 and one_by_one.cost.seconds > 0
    assert inception_is.cost.calls == 3 and inception_is.cost.images == 9


def test_inception_reads_grey_and_rejects_bad_inputs(inception_is, tmp_path):
    grey = images(1, c=1)
    five = torch.tensor([5])
    assert torch.equal(inception_is(grey, five), inception_is(grey.expand(-1, 3, -1, -1), five))
    assert torch.equal(to_uint8_rgb(grey, "cpu")[:, 0], to_uint8_rgb(grey, "cpu")[:, 2])
    with pytest.raises(ValueError, match="0..999"):
        inception_is(grey, torch.tensor([1000]))
    with pytest.raises(TypeError, match="class indices"):
        inception_is(grey, ["a tench"])
    torch.save({"fc.weight": torch.zeros(1008, 2048)}, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="do not fit"):
        load_inception(str(tmp_path / "partial.pth"))
    torch.save({"fc.weight": nn.Linear(2, 2)}, tmp_path / "pickled.pth")  # a module: needs a full unpickle
    with pytest.raises(WeightsError, match="not a plain state dict"):
        load_inception(str(tmp_path / "pickled.pth"))


# ---------- CLIP zero-shot ----------

@pytest.fixture(scope="module")
def clip_encoder() -> ClipEncoder:
    return ClipEncoder(*tiny_clip())


def test_zero_shot_logits_pick_the_matching_class():
    g = torch.Generator().manual_seed(1)
    classes = torch.randn(6, 8, generator=g)
    order = torch.tensor([3, 0, 5, 1, 4, 2, 3])
    image = 2.0 * classes[order] + 0.1 * torch.randn(7, 8, generator=g)  # near class order[i], another norm
    logits = zero_shot_logits(image, classes, logit_scale=100.0)
    assert logits.shape == (7, 6) and torch.equal(logits.argmax(1), order)
    assert torch.allclose(logits, 100 * F.cosine_similarity(image[:, None], classes[None], dim=-1), atol=1e-4)
    assert logits.abs().max() <= 100 + 1e-4


def test_class_embeddings_average_templates(clip_encoder):
    templates = ["a photo of a {name}.", "a {name}"]
    both = class_text_embeddings(clip_encoder, ["one", "two"], templates)
    with torch.no_grad():
        each = [F.normalize(clip_encoder.embed_texts([t.format(name=n) for t in templates]), dim=-1)
                for n in ("one", "two")]
    assert torch.allclose(both, torch.stack([F.normalize(e.mean(0), dim=0) for e in each]), atol=1e-6)
    assert torch.allclose(both.norm(dim=-1), torch.ones(2))
    with pytest.raises(ValueError, match="name"):
        class_text_embeddings(clip_encoder, ["one"], ["no placeholder"])


def test_clip_zeroshot_on_tiny_clip(clip_encoder):
    x, cond = images(6, h=20, w=24), torch.tensor([0, 1, 2, 9, 4, 0])
    verifier = ClipZeroShot(clip_encoder, DIGIT_NAMES, batch_size=6)
    scores = verifier(x, cond)
    assert scores.shape == (6,) and scores.dtype == torch.float32
    with torch.no_grad():
        texts = F.normalize(clip_encoder.embed_texts([f"a photo of a {n}." for n in DIGIT_NAMES]), dim=-1)
        scale = clip_encoder.model.logit_scale.exp()
        logits = scale * F.normalize(clip_encoder.embed_images(x), dim=-1) @ texts.T
    assert torch.allclose(scores, logits[torch.arange(6), cond], atol=1e-4)
    assert torch.equal(verifier(x, cond), scores)
    for batch_size in (1, 4):
        other = ClipZeroShot(clip_encoder, DIGIT_NAMES, batch_size=batch_size)
        assert torch.allclose(other(x, cond), scores, atol=1e-4)
    assert torch.allclose(verifier(x.flip(0), cond.flip(0)), scores.flip(0), atol=1e-4)
    assert not torch.allclose(verifier(x, (cond + 1) % 10), scores)
    log_prob = ClipZeroShot(clip_encoder, DIGIT_NAMES, score="log_prob")(x, cond)
    assert torch.allclose(log_prob, logits.log_softmax(-1)[torch.arange(6), cond], atol=1e-4) and (log_prob < 0).all()
    assert verifier.cost.calls == 4 and verifier.cost.images == 24
    with pytest.raises(ValueError, match="0..9"):
        verifier(x[:1], torch.tensor([10]))


def test_clip_zeroshot_from_config_reads_a_local_clip(tmp_path):
    model, tokenizer = tiny_clip(seed=3)
    model.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    (tmp_path / "names.txt").write_text("zero\none\n\ntwo\n")
    cfg = OmegaConf.merge(OmegaConf.structured(ClipZeroShotConfig),
                          {"clip": str(tmp_path / "clip"), "classes": str(tmp_path / "names.txt"), "batch_size": 2})
    verifier = ClipZeroShot.from_config(OmegaConf.to_object(cfg), "cpu")
    assert verifier.class_names == ["zero", "one", "two"] and verifier.class_embeds.shape == (3, 16)
    direct = ClipZeroShot(ClipEncoder(model, tokenizer), ["zero", "one", "two"])
    x = images(3, c=1, h=8, w=8)
    assert torch.allclose(verifier(x, torch.tensor([0, 1, 2])), direct(x, torch.tensor([0, 1, 2])), atol=1e-5)


# ---------- DINOv2 + linear head ----------

def tiny_dino(depth: int = 4, seed: int = 2) -> nn.Module:
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, depth=depth,
                                  embed_dim=32, num_heads=2, num_classes=0)
    return perturbed(model, seed)


def head_state(width: int, classes: int = 10, seed: int = 4) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, width, generator=g) / width ** 0.5
    return {"weight": weight, "bias": torch.randn(classes, generator=g)}


def reference_features(model: nn.Module, pixels: torch.Tensor, width: int) -> torch.Tensor:
    """DINOv2's linear-evaluation inputs, by running timm's blocks one at a time."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(pixels)))
    outs = []
    for block in model.blocks:
        x = block(x)
        outs.append(model.norm(x))
    last = outs[-1]
    parts = {32: [last[:, 0]], 64: [last[:, 0], last[:, 1:].mean(1)],
             160: [o[:, 0] for o in outs[-4:]] + [last[:, 1:].mean(1)]}[width]
    return torch.cat(parts, dim=-1)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_linear_head_file_round_trip(tmp_path, suffix):
    state = head_state(64)
    path = tmp_path / f"head{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    head = load_linear_head(str(path))
    assert (head.in_features, head.out_features) == (64, 10) and not head.training
    assert torch.equal(head.weight, state["weight"]) and torch.equal(head.bias, state["bias"])
    torch.save({"linear.weight": state["weight"]}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match="not a linear head"):
        load_linear_head(str(tmp_path / "other.pth"))
    with pytest.raises(WeightsError, match="does not exist"):
        load_linear_head(str(tmp_path / "missing.pth"))


@pytest.mark.parametrize("width", [32, 64, 160])
def test_dino_linear_scores_the_heads_logit(width):
    model = tiny_dino()
    backbone = DinoBackbone(model)
    head = nn.Linear(width, 10)
    head.load_state_dict(head_state(width))
    verifier = DinoLinear(backbone, head, batch_size=5)
    x, cond = images(5, h=20, w=24), torch.tensor([3, 1, 4, 1, 5])
    scores = verifier(x, cond)
    assert scores.shape == (5,) and scores.dtype == torch.float32
    with torch.no_grad():
        expected = head(reference_features(model, backbone.pixels(x), width))[torch.arange(5), cond]
    assert torch.allclose(scores, expected, atol=1e-4)
    assert torch.equal(verifier(x, cond), scores)
    assert torch.allclose(DinoLinear(backbone, head, batch_size=2)(x, cond), scores, atol=1e-5)
    assert torch.allclose(verifier(x.flip(0), cond.flip(0)), scores.flip(0), atol=1e-5)
    assert not torch.allclose(verifier(x, cond + 1), scores)


def test_dino_preprocessing_and_head_checks():
    backbone = DinoBackbone(tiny_dino(depth=1))
    grey = images(2, c=1, h=8, w=8)
    pixels = backbone.pixels(grey)
    assert pixels.shape == (2, 3, 28, 28)
    rgb = pixels * torch.tensor([0.229, 0.224, 0.225])[:, None, None] + torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-5) and torch.allclose(rgb[:, 0], rgb[:, 2], atol=1e-5)
    # ImageNet normalisation: a mid-grey image maps to (0.5 − mean) / std per channel.
    mid = backbone.pixels(torch.zeros(1, 3, 14, 14))
    expected = (0.5 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(mid.mean((2, 3))[0], expected, atol=1e-5)
    with pytest.raises(ValueError, match="32, 64 or 160"):
        DinoLinear(backbone, nn.Linear(48, 10))
    assert published_head_url("vit_small_patch14_dinov2.lvd142m") == \
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vits14/dinov2_vits14_linear_head.pth"
    assert published_head_url("vit_large_patch14_reg4_dinov2.lvd142m", layers=4) == \
        "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/dinov2_vitl14_reg4_linear4_head.pth"
    with pytest.raises(WeightsError, match="no published DINOv2 head"):
        published_head_url("vit_base_patch16_224")


def test_dino_linear_from_config_loads_local_checkpoints(tmp_path):
    """Full-size ViT-S/14 at 224 px with random weights: the real loading path (timm pretrained_cfg_overlay)."""
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(5)
        model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "backbone.safetensors"))
    torch.save(head_state(768, classes=1000), tmp_path / "dinov2_vits14_linear_head.pth")
    cfg = DinoLinearConfig(weights=str(tmp_path / "dinov2_vits14_linear_head.pth"),
                           backbone_weights=str(tmp_path / "backbone.safetensors"), batch_size=2)
    verifier = DinoLinear.from_config(cfg, "cpu")
    assert verifier.backbone.image_size == 224 and verifier.head.in_features == 768
    assert torch.equal(verifier.backbone.model.pos_embed, model.pos_embed)
    scores = verifier(images(2, c=1, h=8, w=8), torch.tensor([0, 999]))
    assert scores.shape == (2,) and torch.isfinite(scores).all()


# ---------- FID-oracle ----------

def random_statistics(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g)
    return feature_statistics(torch.randn(n, d, generator=g) @ mixing + torch.randn(d, generator=g))


def fid_reference(mu1, sigma1, mu2, sigma2) -> float:
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    stats = [{"mu": m.numpy(), "sigma": s.numpy()} for m, s in ((mu1, sigma1), (mu2, sigma2))]
    return fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]


def test_frechet_distance_matches_reference_implementations():
    import scipy.linalg

    mu1, sigma1 = random_statistics(60, 12, seed=0)
    mu2, sigma2 = random_statistics(80, 12, seed=1)
    ours = frechet_distance(mu1, sigma1, mu2, sigma2)
    covmean = scipy.linalg.sqrtm(sigma1.numpy() @ sigma2.numpy()).real  # pytorch-fid's formula
    pytorch_fid = float(((mu1 - mu2) ** 2).sum() + sigma1.trace() + sigma2.trace() - 2 * np.trace(covmean))
    assert ours > 1.0
    assert ours == pytest.approx(fid_reference(mu1, sigma1, mu2, sigma2), rel=1e-9)
    assert ours == pytest.approx(pytorch_fid, rel=1e-7)
    assert frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0.0, abs=1e-9)
    # A rank-deficient covariance (fewer samples than dimensions), as a small selection has.
    mu3, sigma3 = random_statistics(5, 12, seed=2)
    expected = fid_reference(mu3, sigma3, mu2, sigma2)
    assert frechet_distance(mu3, sigma3, mu2, sigma2) == pytest.approx(expected, rel=1e-7)


def test_greedy_picks_the_candidate_that_lowers_fid():
    # Reference N(0, I); per condition: a shifted copy, a sample (whitened so the all-samples set matches exactly),
    # and a too-wide copy. Selecting the samples gives FID 0, the global minimum.
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 4, generator=g, dtype=torch.float64)
    mu, sigma = feature_statistics(z)
    z = (z - mu) @ torch.linalg.inv(torch.linalg.cholesky(sigma)).T
    candidates = torch.stack([z + 3, z, 4 * z], dim=1)
    mu_ref, sigma_ref = torch.zeros(4), torch.eye(4)
    init = torch.ones(16, dtype=torch.long)
    init[5] = 2  # one wrong pick among right ones: one visit must fix it and leave the others alone
    one_pass = greedy_fid_search(candidates, mu_ref, sigma_ref, passes=1, init=init)
    assert torch.equal(one_pass.chosen, torch.ones(16, dtype=torch.long)) and one_pass.fid == pytest.approx(0, abs=1e-9)
    result = greedy_fid_search(candidates, mu_ref, sigma_ref, passes=5)  # from every condition's candidate 0
    assert torch.equal(result.chosen, torch.ones(16, dtype=torch.long)) and result.passes < 5
    assert torch.equal(greedy_fid_selection(candidates, mu_ref, sigma_ref, order=range(15, -1, -1), passes=5),
                       result.chosen)


def test_greedy_is_coordinatewise_optimal_against_torch_fidelity():
    g = torch.Generator().manual_seed(3)
    c, n = 5, 3
    candidates = torch.randn(c, n, 3, generator=g)
    mu_ref, sigma_ref = random_statistics(40, 3, seed=4)
    result = greedy_fid_search(candidates, mu_ref, sigma_ref, passes=10)
    assert result.passes < 10  # converged: the last pass changed nothing
    rows = torch.arange(c)

    def fid_of(choice):
        return fid_reference(*feature_statistics(candidates[rows, choice]), mu_ref, sigma_ref)

    assert result.fid == pytest.approx(fid_of(result.chosen), rel=1e-9)
    for k, j in itertools.product(range(c), range(n)):  # every single swap, scored exactly
        swapped = result.chosen.clone()
        swapped[k] = j
        assert result.candidate_fid[k, j].item() == pytest.approx(fid_of(swapped), rel=1e-9)
    assert torch.equal(result.candidate_fid.argmin(1), result.chosen)
    assert result.fid < fid_of(torch.zeros(c, dtype=torch.long))
    brute = min(fid_of(torch.tensor(t)) for t in itertools.product(range(n), repeat=c))
    assert result.fid >= brute - 1e-9


@pytest.fixture(scope="module")
def digits_oracle() -> FidOracle:
    return FidOracle.from_config(FidOracleConfig(), "cpu")


def test_fid_oracle_on_digits_prefers_real_digits(digits_oracle):
    x, y = load_digits()
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(y), generator=g)[:60]
    noise = torch.rand(60, 1, 8, 8, generator=g) * 2 - 1
    blank = -torch.ones(60, 1, 8, 8)
    batch = torch.stack([noise, x[idx], blank], dim=1).reshape(180, 1, 8, 8)  # condition-major, N = 3
    cond = y[idx].repeat_interleave(3)
    groups = torch.arange(60).repeat_interleave(3)
    scores = digits_oracle(batch, cond, groups=groups)
    selection = digits_oracle.last_selection
    assert scores.shape == (180,) and torch.equal(scores.view(60, 3).argmax(1), selection.chosen)
    assert (selection.chosen == 1).float().mean() > 0.8
    noise_fid = greedy_fid_search(digits_oracle.features(noise)[:, None], *digits_reference()).fid
    assert selection.fid < noise_fid
    assert digits_oracle.cost.images == 180 and digits_oracle.cost.calls == 1
    # Any interleaving: candidate-major order (every condition's candidate 0, then 1, 2), named by `groups`.
    perm = torch.arange(180).view(60, 3).T.reshape(-1)
    assert torch.equal(digits_oracle(batch[perm], cond[perm], groups=groups[perm]), scores[perm])


def test_fid_oracle_groups_and_errors(digits_oracle):
    x, _ = load_digits()
    cond = torch.tensor([0, 0, 1, 1, 2, 2])
    by_runs = digits_oracle(x[:6], cond)  # consecutive runs of equal conditions
    assert torch.equal(by_runs, digits_oracle(x[:6], cond, groups=torch.tensor([7, 7, 8, 8, 9, 9])))
    # One candidate per condition (a search scoring its final images): every score is −FID of the whole set.
    single = digits_oracle(x[:6], torch.arange(6))
    expected = frechet_distance(*feature_statistics(DigitsFeatures()(x[:6])), digits_oracle.mu_ref,
                                digits_oracle.sigma_ref)
    assert torch.allclose(single, torch.full((6,), -expected, dtype=torch.float32))
    with pytest.raises(ValueError, match="same number of candidates"):
        digits_oracle(x[:5], cond[:5])
    with pytest.raises(ValueError, match="several conditions"):
        digits_oracle(x[:2], cond[:2])
    with pytest.raises(ValueError, match="1, 8, 8"):
        DigitsFeatures()(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="reference"):
        FidOracle.from_config(FidOracleConfig(features="inception", weights="unused.pth"), "cpu")


def test_reference_stats_digits_round_trip(tmp_path):
    out = tmp_path / "stats" / "digits.npz"
    reference_stats.main([str(out), "--digits"])
    assert [p.name for p in out.parent.iterdir()] == ["digits.npz"]  # no temporary file left behind
    mu, sigma = load_reference(str(out))
    expected_mu, expected_sigma = digits_reference()
    assert mu.shape == (128,) and sigma.shape == (128, 128)
    assert torch.allclose(mu, expected_mu) and torch.allclose(sigma, expected_sigma)
    with np.load(out) as data:
        assert np.allclose(np.cov(DigitsFeatures()(load_digits()[0]).double().numpy(), rowvar=False), data["sigma"])
    oracle = FidOracle.from_config(FidOracleConfig(reference=str(out)), "cpu")
    assert torch.equal(oracle.mu_ref, mu)
    np.savez(tmp_path / "bad.npz", mean=mu.numpy())
    with pytest.raises(ValueError, match="'mu' and 'sigma'"):
        load_reference(str(tmp_path / "bad.npz"))


def test_reference_stats_folder_uses_inception_features(tmp_path, inception_weights):
    folder = tmp_path / "images"
    folder.mkdir()
    x = images(3, h=12, w=12, seed=7)
    for i, pixels in enumerate(to_uint8(x)):
        Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    out = tmp_path / "ref.npz"
    reference_stats.main([str(out), "--folder", str(folder), "--weights", inception_weights, "--batch-size", "3"])
    mu, sigma = load_reference(str(out))
    with torch.no_grad():
        expected = feature_statistics(InceptionFeatures.from_pretrained(inception_weights)(x))
    assert mu.shape == (2048,) and torch.allclose(mu, expected[0], atol=1e-5)
    assert torch.allclose(sigma, expected[1], atol=1e-6)


# ---------- self-supervised ----------

def test_ssl_score_is_cosine_similarity():
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 0.0]])
    b = torch.tensor([[3.0, 0.0, 0.0], [0.0, 0.0, 5.0], [-1.0, -1.0, 0.0]])
    assert torch.allclose(ssl_score(a, b), torch.tensor([1.0, 0.0, -1.0]))
    assert torch.allclose(ssl_score(a, a), torch.ones(3))


def test_ssl_verifier_on_digits_features():
    x, _ = load_digits()
    finals, early = x[:8], x[8:16]
    verifier = SslDigits.from_config(SslDigitsConfig(batch_size=8), "cpu")
    assert verifier.sigma == 0.4
    assert torch.allclose(verifier(finals, None, x0=finals), torch.ones(8), atol=1e-5)
    scores = verifier(finals, None, x0=early)
    expected = F.cosine_similarity(DigitsFeatures()(finals), DigitsFeatures()(early), dim=-1)
    assert scores.shape == (8,) and torch.allclose(scores, expected, atol=1e-5) and (scores < 0.999).all()
    for batch_size in (1, 3):
        assert torch.allclose(SslFeatures(verifier.features, batch_size=batch_size)(finals, None, x0=early), scores,
                              atol=1e-5)
    assert torch.allclose(verifier(finals.flip(0), None, x0=early.flip(0)), scores.flip(0), atol=1e-5)
    assert verifier.cost.calls == 3 and verifier.cost.images == 24
    with pytest.raises(ValueError, match="x0="):
        verifier(finals, None)


def test_ssl_verifier_on_tiny_dino():
    verifier = SslFeatures(DinoClsFeatures(DinoBackbone(tiny_dino(depth=2))), sigma=0.3, batch_size=4)
    finals, early = images(5, h=20, w=20, seed=1), images(5, h=20, w=20, seed=2)
    assert torch.allclose(verifier(finals, None, x0=finals), torch.ones(5), atol=1e-5)
    scores = verifier(finals, None, x0=early)
    assert (scores < 0.9999).all()
    assert torch.allclose(SslFeatures(verifier.features, batch_size=1)(finals, None, x0=early), scores, atol=1e-5)


def test_ssl_dino_from_config_loads_a_local_backbone(tmp_path):
    """Full-size ViT-S/14 with random weights from a local file, read at 28 px (position embeddings resampled)."""
    import timm

    with torch.random.fork_rng():
        torch.manual_seed(6)
        model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    save_file({k: v.contiguous() for k, v in perturbed(model, 6).state_dict().items()},
              str(tmp_path / "backbone.safetensors"))
    verifier = SslDino.from_config(SslDinoConfig(weights=str(tmp_path / "backbone.safetensors"), image_size=28,
                                                 sigma=0.5, batch_size=2), "cpu")
    assert verifier.name == "ssl_dino" and verifier.sigma == 0.5 and verifier.features.backbone.image_size == 28
    finals, early = images(3, c=1, h=8, w=8, seed=3), images(3, c=1, h=8, w=8, seed=4)
    scores = verifier(finals, None, x0=early)
    expected = F.cosine_similarity(verifier.features(finals), verifier.features(early), dim=-1)
    assert torch.allclose(scores, expected, atol=1e-5) and (scores < 0.9999).all()
    assert torch.allclose(verifier(finals, None, x0=finals), torch.ones(3), atol=1e-5)
    assert verifier.cost.calls == 4 and verifier.cost.images == 6  # batches of 2 pairs: 2 + 2 passes


def test_ssl_clip_compares_clip_image_embeddings(tmp_path):
    model, tokenizer = tiny_clip(seed=3)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    verifier = SslClip.from_config(SslClipConfig(clip=str(tmp_path), batch_size=3), "cpu")
    assert isinstance(verifier.features, ClipImageFeatures) and verifier.name == "ssl_clip"
    finals, early = images(5, h=32, w=32, seed=5), images(5, h=32, w=32, seed=6)
    scores = verifier(finals, None, x0=early)
    encoder = verifier.features.encoder
    expected = F.cosine_similarity(encoder.embed_images(finals), encoder.embed_images(early), dim=-1)
    assert scores.shape == (5,) and torch.allclose(scores, expected, atol=1e-5)
    noisier = verifier(finals, None, x0=(finals + 0.8 * images(5, h=32, w=32, seed=7)).clamp(-1, 1))
    closer = verifier(finals, None, x0=(finals + 0.1 * images(5, h=32, w=32, seed=7)).clamp(-1, 1))
    assert (closer > noisier).all()  # a less perturbed early guess agrees more with the final sample
    assert torch.allclose(SslFeatures(verifier.features, batch_size=1)(finals, None, x0=early), scores, atol=1e-5)
