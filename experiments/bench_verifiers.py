"""Cost per image of every verifier on the CPU: wall seconds and forward passes per image.

    python experiments/bench_verifiers.py [--threads 1] [--tiny-only] [--batch 32] [--real-batch 4]
                                          [--repeats 5] [--real-repeats 3] [--out outputs/bench]

Each verifier scores its benchmark's native images: digits 1×8×8 with class indices, scenes 1×16×16 with condition
rows, text-to-image verifiers random 3×64×64 images with prompts. Backbone verifiers get two rows: "tiny random", a
small network built from a config as in the tests, and "real-size random", the published architecture with random
weights (CLIP ViT-L/14, ImageReward v1.0's BLIP, DINOv2 ViT-S/14, torch-fidelity's InceptionV3, the last with no
tiny row), whose cost the hub weights would not change. The real-size CLIP reads prompts with the tests' character
tokenizer: a few more text tokens than OpenAI's BPE would give. Verifiers with committed weights, or none (the
scene checker), have one row.

Per row: one warm-up call, on the full batch (on one image for the real-size rows, where it would cost minutes; the
median of their timed calls absorbs a slower first call), then `repeats` calls on fresh images. s/image is the
median of wall seconds / images; passes/image is the verifier's `cost.calls / cost.images` over the timed calls,
next to what its batch sizes imply. The LLM grader is timed separately against a stub chat-completions server on
127.0.0.1, with the memory cache only and fresh images each call, so every image is one HTTP request: an API round
trip, not a model. Prints a markdown table and writes it to OUT/verifiers.md, the rows to OUT/verifiers.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn

# tests/tiny_models.py builds the tiny CLIP and the random-weight InceptionV3 the tests use; share them.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from tiny_models import random_inception_weights, tiny_clip, tiny_clip_tokenizer  # noqa: E402

from inference_scaling import scenes  # noqa: E402
from inference_scaling.datasets import DIGIT_NAMES, load_digits  # noqa: E402
from inference_scaling.verifiers.aesthetic import Aesthetic, ScoreMLP  # noqa: E402
from inference_scaling.verifiers.classifier import ClassifierLogit, ClassifierProb  # noqa: E402
from inference_scaling.verifiers.clip_score import ClipEncoder, ClipScore  # noqa: E402
from inference_scaling.verifiers.clip_zeroshot import ClipZeroShot  # noqa: E402
from inference_scaling.verifiers.dino_linear import DinoBackbone, DinoLinear  # noqa: E402
from inference_scaling.verifiers.ensemble import Ensemble  # noqa: E402
from inference_scaling.verifiers.fid_oracle import DigitsFeatures, FidOracle, digits_reference  # noqa: E402
from inference_scaling.verifiers.image_reward import ImageReward, ImageRewardModel, image_reward_configs  # noqa: E402
from inference_scaling.verifiers.inception_is import InceptionIS  # noqa: E402
from inference_scaling.verifiers.llm_grader import ASPECTS, LLMGrader, LLMGraderConfig  # noqa: E402
from inference_scaling.verifiers.scene_checker import SceneChecker  # noqa: E402
from inference_scaling.verifiers.scene_classifier import SceneClassifierVerifier  # noqa: E402
from inference_scaling.verifiers.ssl_clip import ClipImageFeatures, SslClip  # noqa: E402
from inference_scaling.verifiers.ssl_digits import SslDigits  # noqa: E402
from inference_scaling.verifiers.ssl_dino import DinoClsFeatures, SslDino  # noqa: E402

PROMPTS = ["a red cat", "a blue dog", "two birds on a wire", "a bowl of fruit", "a city at night", "an old map",
           "a green apple", "three red cubes"]
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted({w for p in PROMPTS for w in p.split()})
CANDIDATES = 4  # candidates per condition for the set-level FID-oracle
SSL_SIGMA = 0.4
TINY, REAL, EMBEDDED = "tiny random", "real-size random", "embedded"
Call = tuple[tuple, dict]  # positional and keyword arguments of one verifier call


@dataclass
class Case:
    verifier: str
    model: str  # TINY, REAL, EMBEDDED or a description, plus the backbone
    build: Callable[[], Any]
    inputs: Callable[[int, int], Call]  # (images, seed) → arguments of one call
    shape: tuple[int, ...]  # one image as fed to the verifier
    passes: Callable[[int], int]  # forward passes (API requests) one call on this many images should cost


@dataclass
class Row:
    verifier: str
    model: str
    image: str
    batch: int
    seconds_per_image: float
    passes_per_image: float
    expected_passes_per_image: float
    failed: int


# ---------- inputs ----------

def digits(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """n of the 1,797 digits (B, 1, 8, 8) in [-1, 1] and their labels."""
    x, y = load_digits()
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[rows], y[rows]


def noisy(x: Tensor, seed: int) -> Tensor:
    """x0-predictions standing in for the sampler's at σ: the final images plus σ-scaled noise."""
    return (x + SSL_SIGMA * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(-1, 1)


def class_call(n: int, seed: int) -> Call:
    x, y = digits(n, seed)
    return (x, y), {}


def ssl_call(n: int, seed: int) -> Call:
    x, _ = digits(n, seed)
    return (x, None), {"x0": noisy(x, seed + 1)}


def fid_call(n: int, seed: int) -> Call:
    """n // CANDIDATES conditions (digit classes) of CANDIDATES candidates each."""
    x, _ = digits(n, seed)
    groups = torch.arange(n // CANDIDATES).repeat_interleave(CANDIDATES)
    return (x, groups % 10), {"groups": groups}


def scene_call(n: int, seed: int) -> Call:
    """n scenes drawn for n condition rows picked at random from a balanced set."""
    rows = scenes.balanced_conditions(n)
    rows = rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))[:n]]
    return (scenes.generate(rows, seed), rows), {}


def t2i_call(n: int, seed: int) -> Call:
    """Random 3×64×64 images; prompt i % 8, so a batch of 32 holds 4 candidates per prompt."""
    x = torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return (x, [PROMPTS[i % len(PROMPTS)] for i in range(n)]), {}


# ---------- networks (random weights; cached so verifiers share them as an ensemble does) ----------

def clip_vit_l14():
    """OpenAI CLIP ViT-L/14's config (openai/clip-vit-large-patch14) written out, random weights; the character
    tokenizer of the tests (token ids 0 and 1 are its start and end tokens)."""
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                         bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=224, patch_size=14, hidden_act="quick_gelu"),
        projection_dim=768)
    return CLIPModel(config).eval(), tiny_clip_tokenizer()


@cache
def clip_encoder(real: bool) -> ClipEncoder:
    return ClipEncoder(*(clip_vit_l14() if real else tiny_clip()))


@cache
def image_reward_model(real: bool) -> ImageRewardModel:
    """ImageReward v1.0's BLIP (ViT-L/16, BERT-base with cross-attention), or a width-32 two-layer one."""
    from transformers import BlipTextConfig, BlipVisionConfig

    if real:
        return ImageRewardModel(*image_reward_configs()).eval()
    vision = BlipVisionConfig(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=16, layer_norm_eps=1e-6)
    text = BlipTextConfig(vocab_size=len(BERT_VOCAB), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40, is_decoder=True,
                          use_cache=False, pad_token_id=0, bos_token_id=None, eos_token_id=None, sep_token_id=None)
    return ImageRewardModel(vision, text).eval()


def image_reward(real: bool) -> ImageReward:
    """ImageReward with a BERT tokenizer over the prompts' words; prompts are padded to 35 tokens either way."""
    from transformers import BertTokenizer

    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(BERT_VOCAB)})
    return ImageReward(image_reward_model(real), tokenizer)


@cache
def dino_backbone(real: bool) -> DinoBackbone:
    """timm's DINOv2 ViT-S/14 at 224 px, or a width-32 four-block one at 28 px."""
    import timm

    small = {} if real else dict(depth=4, embed_dim=32, num_heads=2)
    return DinoBackbone(timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                                          img_size=224 if real else 28, **small))


def dino_linear(real: bool) -> DinoLinear:
    """The backbone with DINOv2's "linear" head layout ([class token, mean patch token] → classes)."""
    backbone = dino_backbone(real)
    return DinoLinear(backbone, nn.Linear(2 * backbone.embed_dim, 1000 if real else 10))


def inception_is() -> InceptionIS:
    with tempfile.TemporaryDirectory() as tmp:
        return InceptionIS.from_pretrained(random_inception_weights(Path(tmp) / "inception-random.pth"))


def ensemble(real: bool) -> Ensemble:
    """The paper's ensemble: aesthetic, CLIPScore and ImageReward, the first two sharing one CLIP."""
    encoder = clip_encoder(real)
    return Ensemble([Aesthetic(encoder, ScoreMLP(encoder.embed_dim)), ClipScore(encoder), image_reward(real)])


# ---------- cases ----------

def per_batch(size: int, members: int = 1) -> Callable[[int], int]:
    """Passes of a verifier that runs `members` networks on chunks of at most `size` images."""
    return lambda n: members * math.ceil(n / size)


def one_pass(n: int) -> int:
    return 1


def backbone_cases(real: bool) -> Iterator[Case]:
    """Rows of the verifiers with a tiny and a real-size backbone."""
    model = REAL if real else TINY
    clip_net = f"CLIP {'ViT-L/14 @224' if real else 'width 32 @32'}"
    blip_net = f"BLIP {'ViT-L/16 @224 + BERT-base' if real else 'width 32 @32'}"
    clip, blip = f"{model}: {clip_net}", f"{model}: {blip_net}"
    dino = f"{model}: DINOv2 {'ViT-S/14 @224' if real else 'width 32 @28'}"
    t2i, digit = (3, 64, 64), (1, 8, 8)
    yield Case("clip_score", clip, lambda: ClipScore(clip_encoder(real)), t2i_call, t2i, per_batch(32))
    yield Case("aesthetic", clip, lambda: Aesthetic(clip_encoder(real), ScoreMLP(clip_encoder(real).embed_dim)),
               t2i_call, t2i, per_batch(32))
    yield Case("image_reward", blip, lambda: image_reward(real), t2i_call, t2i, per_batch(32))
    yield Case("ensemble", f"{clip} + {blip_net}", lambda: ensemble(real), t2i_call, t2i, per_batch(32, members=3))
    yield Case("clip_zeroshot", clip, lambda: ClipZeroShot(clip_encoder(real), DIGIT_NAMES), class_call, digit,
               per_batch(32))
    yield Case("dino_linear", dino, lambda: dino_linear(real), class_call, digit, per_batch(64))
    yield Case("ssl_dino", dino, lambda: SslDino(DinoClsFeatures(dino_backbone(real)), SSL_SIGMA), ssl_call,
               digit, per_batch(32))
    yield Case("ssl_clip", clip, lambda: SslClip(ClipImageFeatures(clip_encoder(real)), SSL_SIGMA), ssl_call,
               digit, per_batch(32))
    if real:
        yield Case("inception_is", f"{REAL}: InceptionV3 @299", inception_is, class_call, digit, per_batch(64))


def embedded_cases() -> Iterator[Case]:
    """Rows of the verifiers with committed weights (or none)."""
    digit, scene = (1, 8, 8), scenes.IMAGE_SHAPE
    yield Case("classifier_prob", f"{EMBEDDED}: digits classifier", ClassifierProb, class_call, digit, one_pass)
    yield Case("classifier_logit", f"{EMBEDDED}: digits classifier", ClassifierLogit, class_call, digit, one_pass)
    yield Case("scene_checker", "exact checker, no network", SceneChecker, scene_call, scene, one_pass)
    yield Case("scene_classifier", f"{EMBEDDED}: scene classifier", SceneClassifierVerifier, scene_call, scene,
               one_pass)
    yield Case("fid_oracle", f"{EMBEDDED}: digits classifier features, {CANDIDATES} candidates/condition",
               lambda: FidOracle(DigitsFeatures(), *digits_reference()), fid_call, digit, per_batch(256))
    yield Case("ssl_digits", f"{EMBEDDED}: digits classifier features",
               lambda: SslDigits(DigitsFeatures(), SSL_SIGMA), ssl_call, digit, per_batch(32))


# ---------- the LLM grader's stub server ----------

class StubServer:
    """POST /v1/chat/completions on 127.0.0.1 answering every request at once with the same valid grade."""

    def __init__(self):
        content = json.dumps({aspect: 5 for aspect in ASPECTS})
        reply = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def llm_case(url: str) -> Case:
    # The key variable is left unset (a localhost server needs none); cache_dir None keeps grades in memory
    # only, and fresh images each call miss it.
    config = LLMGraderConfig(base_url=url, model="stub", api_key_env="BENCH_VERIFIERS_UNSET_KEY", cache_dir=None)
    return Case("llm_grader", f"API round trip to a local stub (PNG upscaled to {config.min_side} px, "
                f"{config.max_concurrency} in flight)", lambda: LLMGrader(config), t2i_call, (3, 64, 64), lambda n: n)


# ---------- measurement and report ----------

def measure(case: Case, batch: int, repeats: int, warmup: int) -> Row:
    """Build the verifier, call it once on `warmup` images, then time `repeats` calls on `batch` fresh images."""
    verifier = case.build()
    args, kwargs = case.inputs(warmup, 0)
    verifier(*args, **kwargs)
    calls, images, failed = verifier.cost.calls, verifier.cost.images, verifier.cost.failed
    per_image = []
    for seed in range(1, repeats + 1):
        args, kwargs = case.inputs(batch, seed)
        start = time.perf_counter()
        verifier(*args, **kwargs)
        per_image.append((time.perf_counter() - start) / batch)
    passes = (verifier.cost.calls - calls) / (verifier.cost.images - images)
    return Row(case.verifier, case.model, "×".join(map(str, case.shape)), batch, statistics.median(per_image),
               passes, case.passes(batch) / batch, verifier.cost.failed - failed)


def table(rows: list[Row], passes: str) -> str:
    lines = [f"| verifier | model | image size fed | batch | s/image (median) | {passes}/image | expected |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.verifier} | {r.model} | {r.image} | {r.batch} | {r.seconds_per_image:.3g} | "
                     f"{r.passes_per_image:.4g} | {r.expected_passes_per_image:.4g} |")
    return "\n".join(lines)


def cpu_line() -> str:
    name = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    return f"{name}, {len(os.sched_getaffinity(0))} CPUs available to this process, {platform.machine()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--tiny-only", action="store_true", help="skip the real-size rows")
    parser.add_argument("--batch", type=int, default=32, help="images per call, tiny and embedded rows")
    parser.add_argument("--real-batch", type=int, default=4, help="images per call, real-size rows")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after the warm-up, tiny and embedded")
    parser.add_argument("--real-repeats", type=int, default=3, help="timed calls after the warm-up, real-size")
    parser.add_argument("--out", default="outputs/bench")
    args = parser.parse_args()
    if args.batch % CANDIDATES or args.batch < 2 * CANDIDATES:
        parser.error(f"--batch must be a multiple of {CANDIDATES}, at least {2 * CANDIDATES} (FID-oracle groups)")

    begin = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    head = [f"torch {torch.__version__}, threads {torch.get_num_threads()}", f"cpu: {cpu_line()}"]
    print("\n".join(head), flush=True)

    plan = [(case, args.batch, args.repeats, args.batch) for case in [*embedded_cases(), *backbone_cases(real=False)]]
    if not args.tiny_only:
        plan += [(case, args.real_batch, args.real_repeats, 1) for case in backbone_cases(real=True)]
    rows = []
    for case, batch, repeats, warmup in plan:
        rows.append(measure(case, batch, repeats, warmup))
        print(f"{case.verifier:>16}  {case.model:<60} {rows[-1].seconds_per_image:.3g} s/image", flush=True)

    # The grader's client threads and the stub share this process; proxies must not carry its loopback requests.
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "127.0.0.1,localhost"
    stub = StubServer()
    try:
        api = [measure(llm_case(stub.url), args.batch, args.repeats, args.batch)]
    finally:
        stub.close()

    seconds = time.perf_counter() - begin
    report = "\n".join([
        "# Verifier cost per image on the CPU", "", *(f"- {line}" for line in head), "",
        f"Median over {args.repeats} timed calls ({args.real_repeats} for real-size rows) after one warm-up call "
        "(one image for real-size rows); "
        "passes/image: the verifier's cost.calls / cost.images; expected: from the batch sizes.", "",
        table(rows, "forward passes"), "",
        "## API verifier", "",
        table(api, "requests"), "",
        f"Failed API grades: {api[0].failed}. Total runtime {seconds:.0f} s.",
    ])
    print("\n" + report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "verifiers.md").write_text(report + "\n")
    (out / "verifiers.json").write_text(json.dumps({
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": cpu_line(), "tiny_only": args.tiny_only,
        "total_seconds": round(seconds, 1), "rows": [asdict(r) for r in rows], "api": [asdict(r) for r in api],
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
