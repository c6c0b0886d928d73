"""T2I-CompBench's evaluators: the prompt parsing on the shipped prompt files, the official scoring rules on
hand-built boxes, depth maps and answers, the four model wrappers on tiny random models saved as transformers
folders, the settings' checks, and one run through the CLI with benchmark.evaluate=true."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from test_scale_out import app  # noqa: F401 (the in-process CLI fixture)
from test_t2i_verifiers import BERT_WORDS, save_bert_tokenizer, tiny_blip_configs
from test_vp_models import PIXART_TINY, pixart_folder  # noqa: F401 (the tiny PixArt-Σ fixture)
from transformers import (BlipConfig, BlipForQuestionAnswering, CLIPTokenizer, DPTConfig, DPTForDepthEstimation,
                          Owlv2Config, Owlv2ForObjectDetection)

from inference_scaling.benchmarks import BENCHMARKS
from inference_scaling.config import ConfigError, validate
from inference_scaling.evaluation.t2i_compbench import (SPATIAL_2D, SPATIAL_3D, BlipVqa, DepthEstimator, Detection,
                                                        OwlDetector, PromptPlan, Relation, T2ICompBenchConfig,
                                                        T2ICompBenchEvaluator, clip_cosines, complex_parts,
                                                        count_requests, depth_score, merge_duplicates, noun_phrases,
                                                        numeracy_score, parse_relation, plan_prompt, position_score,
                                                        relation_score, score_plan, without_adjectives)
from inference_scaling.store import load_selected
from inference_scaling.verifiers.clip_score import ClipEncoder, ClipScore
from inference_scaling.weights import WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")
CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy")


def prompts(category: str) -> list[str]:
    return BENCHMARKS["t2i_compbench"](T2ICompBenchConfig(categories=[category], per_class=1)).conditions().prompts


def images(n: int, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    """Non-square images in [-1, 1], so that padding and resizing both act."""
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------- the prompt parsing, on the benchmark's own prompts ----------

def test_noun_phrases_split_the_attribute_prompts():
    two_phrases = 0
    for category in ("color", "shape", "texture"):
        for line in prompts(category):
            words = line.rstrip(".").split()
            if len(words) == 7 and words[0] in ("a", "an") and words[3] == "and" and words[4] in ("a", "an"):
                assert noun_phrases(line) == [" ".join(words[:3]), " ".join(words[4:])], line
                two_phrases += 1
    assert two_phrases > 400  # "a green bench and a blue bowl" and its kind
    cases = {
        "rubber sole shoes and fluffy clouds": ["rubber sole shoes", "fluffy clouds"],
        "A black and white cat sits in a white sink.": ["A black and white cat", "a white sink"],
        "A long, narrow yellow kitchen with black and white floor tiles.":
            ["A long, narrow yellow kitchen", "black and white floor tiles"],
        "two white sheep, a black goat and a white goat in a field":
            ["two white sheep", "a black goat", "a white goat", "a field"],
        "A small bathroom with a small brown toilet next to a white sink.":
            ["A small bathroom", "a small brown toilet", "a white sink"],
        "a cubic book and a cylindrical can of soup": ["a cubic book", "a cylindrical can", "soup"],
        "The triangular wedge and the oblong brick were the only pieces left in the construction set.":
            ["The triangular wedge", "the oblong brick", "the only pieces", "the construction set"],
        "The fluffy cat is on the left of the soft pillow.": ["The fluffy cat", "the soft pillow"],
        "The slimy green frog hopped onto the wet brown lily pad.": ["The slimy green frog", "the wet brown lily pad"],
        "The sharp, pungent aroma of the freshly brewed coffee woke up the senses, a daily ritual of energy and "
        "comfort.": ["The sharp, pungent aroma", "the freshly brewed coffee", "the senses", "a daily ritual", "energy",
                     "comfort"],
    }
    for line, expected in cases.items():
        assert line in prompts("color") + prompts("shape") + prompts("texture") + prompts("complex"), line
        assert noun_phrases(line) == expected, line
    long = ("A restroom features black and white checkered flooring and two toilets of which has a black seat and lid "
            "and the other a white seat and lid.")
    assert len(noun_phrases(long, None)) == 7 and len(noun_phrases(long)) == 7
    assert len(noun_phrases("a, b, c, d, e, f, g, h, i, j")) == 8  # BLIP_vqa.py asks at most np_num = 8


def test_every_spatial_prompt_names_its_two_objects_and_relation():
    for category, vocabulary in [("spatial", SPATIAL_2D), ("3d_spatial", SPATIAL_3D)]:
        for line in prompts(category):  # "a giraffe next to a lamp"
            words = line.split()
            relation = parse_relation(line, vocabulary)
            assert (relation.subject, relation.reference) == (words[1], words[-1]), line
            assert relation.relation in vocabulary and " ".join(words[2:-2]).replace("hidden by", "behind").replace(
                "on top of", "on the top of") == relation.relation
    assert parse_relation("The red hat was on top of the brown coat rack.") == Relation("hat", "on the top of",
                                                                                        "coat rack")
    assert parse_relation("a chair hidden by a mouse", SPATIAL_3D) == Relation("chair", "behind", "mouse")
    assert parse_relation("The black phone was resting on the brown charger.") is None
    assert without_adjectives("The red hat was on top of the brown coat rack.") == \
        "The hat was on top of the coat rack ."


def test_numeracy_reads_number_words_before_its_objects():
    assert count_requests("two boys") == [("boy", 2)]
    assert count_requests("six people gathered for a picnic") == [("person", 6)]
    assert count_requests("one tent and three fish") == [("tent", 1), ("fish", 3)]
    assert count_requests("a strawberry, two bananas, four tents, and two peaches completed the camping gear") == [
        ("strawberry", 1), ("banana", 2), ("tent", 4), ("peach", 2)]
    assert all(count_requests(line) for line in prompts("numeracy"))


def test_complex_prompts_take_their_parts_from_the_official_lists():
    lines = prompts("complex")
    parts = [complex_parts(line) for line in lines]
    assert parts.count(("attribute", "spatial")) == 58 and parts.count(("attribute", "action")) == 212
    assert parts.count(("attribute", "spatial", "action")) == 30
    assert complex_parts("The red hat was on top of the brown coat rack.") == ("attribute", "spatial")
    assert complex_parts("The black phone was resting on the brown charger.") == ("attribute", "action")
    assert complex_parts("The smooth black river flowed next to the tall green trees.") == ("attribute", "spatial",
                                                                                            "action")


# ---------- the official rules on hand-built inputs ----------

def test_the_2d_position_rule():
    a, b = (0, 0, 10, 10), (20, 0, 30, 10)  # a left of b, same row
    assert position_score("on the left of", a, b, 479) == 1.0
    assert position_score("on the right of", a, b, 479) == 0.0 and position_score("on the right of", b, a, 479) == 1
    below = (0, 20, 10, 30)
    assert position_score("on the top of", a, below, 479) == 1.0 and position_score("on the bottom of", below, a, 479)
    assert position_score("on the top of", a, b, 479) == 0.0  # further apart sideways than vertically
    overlapping = (5, 0, 15, 10)  # IoU 1/3 >= 0.1: the score is 0.1 / IoU
    assert position_score("on the left of", a, overlapping, 479) == pytest.approx(0.3)
    far = (300, 300, 310, 310)  # 150 px of a 479-px side: near within 150 px on either axis, else 150 / distance
    assert position_score("next to", a, (200, 0, 210, 10), 479) == 1.0
    assert position_score("near", a, far, 479) == pytest.approx(150 / 300)
    assert position_score("near", a, far, 958) == 1.0  # the threshold scales with the image


def test_the_relation_score_adds_confidences_and_cuts_below_one_half():
    left, right = Detection(0.9, (0, 0, 10, 10)), Detection(0.8, (20, 0, 30, 10))
    relation = Relation("cat", "on the left of", "dog")
    both = relation_score(relation, {"cat": [left], "dog": [right]}, 479)
    assert both == pytest.approx(0.25 * 0.9 + 0.25 * 0.8 + 0.5)
    assert relation_score(relation, {"cat": [right], "dog": [left]}, 479) == 0.0  # 0.425 < 0.5
    assert relation_score(relation, {"cat": [left]}, 479) == 0.0  # one object: 0.225, cut
    assert relation_score(relation, {}, 479) == 0.0 and relation_score(None, {"cat": [left]}, 479) == 0.0
    # Of one name the two best detections are compared, in the order that fits.
    desks = Relation("desk", "on the left of", "desk")
    assert relation_score(desks, {"desk": [right, left]}, 479) == pytest.approx(0.925)
    assert relation_score(desks, {"desk": [right]}, 479) == 0.0
    # 3D: no cut (the depth map says which is nearer; the boxes do not overlap, so the position is 0).
    depth = torch.zeros(40, 40)
    assert relation_score(Relation("cat", "in front of", "dog"), {"cat": [left]}, 479, depth) == pytest.approx(0.225)


def test_the_depth_rule_orders_overlapping_boxes_by_mean_depth():
    rows = torch.arange(20.0)[:, None].expand(20, 40) / 20  # inverse depth grows downwards: lower pixels are nearer
    low, high = (0, 4, 10, 20), (0, 0, 10, 16)  # IoU 0.6
    assert depth_score("in front of", low, high, rows) == 1.0 and depth_score("behind", low, high, rows) == 0.0
    assert depth_score("behind", high, low, rows) == 1.0
    partial = (0, 10, 10, 20)  # IoU 60 / 200 = 0.3: IoU / 0.5
    assert depth_score("in front of", partial, high, rows) == pytest.approx(0.3 / 0.5)
    assert depth_score("in front of", (20, 10, 30, 20), high, rows) == 0.0  # no overlap
    assert depth_score("in front of", low, low, rows) == 0.0  # the same depth orders nothing


def test_numeracy_score_and_duplicate_merge():
    assert numeracy_score([("apple", 2), ("dog", 1)], {"apple": 2, "dog": 3}) == pytest.approx(0.5 + 0.25)
    assert numeracy_score([("apple", 2)], {}) == 0.0 and numeracy_score([], {"apple": 1}) == 0.0
    boxes = [Detection(0.9, (0, 0, 10, 10)), Detection(0.8, (0, 0, 10, 10.5)), Detection(0.7, (1, 1, 5, 5)),
             Detection(0.6, (20, 0, 30, 10))]
    assert merge_duplicates(boxes) == [boxes[0], boxes[3]]  # IoU > 0.9, and a box inside another, are one object


def test_scores_by_category():
    found = {"hat": [Detection(0.8, (0, 0, 10, 10))], "coat rack": [Detection(0.6, (0, 20, 10, 30))]}
    color = plan_prompt("a green bench and a red car", "color")
    assert color.questions == ["a green bench?", "a red car?"]
    assert score_plan(color, [0.5, 0.8], None, {}, None, 479) == pytest.approx(0.4)
    assert score_plan(PromptPlan("shape"), [], None, {}, None, 479) == 1.0  # no question: 1, as the official code
    assert score_plan(plan_prompt("A cat is sleeping.", "non_spatial"), [], 0.31, {}, None, 479) == 0.31
    spatial = plan_prompt("The red hat was on top of the brown coat rack.", "complex")
    assert spatial.parts == ("attribute", "spatial") and spatial.clip_text is None
    expected_spatial = 0.25 * 0.8 + 0.25 * 0.6 + 0.5
    assert score_plan(spatial, [0.5, 1.0], None, found, None, 479) == pytest.approx((0.5 + expected_spatial) / 2)
    action = plan_prompt("The black phone was resting on the brown charger.", "complex")
    assert action.relation is None and action.clip_text == "The phone was resting on the charger ."
    assert score_plan(action, [0.4, 0.5], 0.3, {}, None, 479) == pytest.approx((0.2 + 0.3) / 2)
    both = plan_prompt("The smooth black river flowed next to the tall green trees.", "complex")
    assert both.objects == ["river", "trees"]
    assert score_plan(both, [0.5], 0.2, {}, None, 479) == pytest.approx((0.5 + 0 + 0.2) / 3)
    counting = plan_prompt("two apples and a dog", "numeracy")
    assert counting.objects == ["apple", "dog"]
    assert score_plan(counting, [], None, {"apple": found["hat"] * 2}, None, 479) == 0.25  # one merged apple


# ---------- the models, on tiny random ones saved as transformers folders ----------

@pytest.fixture(scope="module")
def blip_folder(tmp_path_factory):
    return make_blip_vqa(tmp_path_factory.mktemp("blip_vqa"))


def make_blip_vqa(folder):
    """A tiny random BLIP VQA saved with its BERT tokenizer into `folder`."""
    words = [*BERT_WORDS, "[DEC]", "[ENC]", "yes", "no", "?", "green", "bench", "car", "an", "the"]
    vision, text = tiny_blip_configs()
    text.vocab_size, text.bos_token_id = len(words), words.index("[DEC]")
    text.initializer_range = vision.initializer_range = 0.5  # answers far from 1/2, so that the checks can fail
    with torch.random.fork_rng():
        torch.manual_seed(0)
        BlipForQuestionAnswering(BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict())
                                 ).save_pretrained(folder)
    return save_bert_tokenizer(folder, words)


def owl_tokenizer() -> CLIPTokenizer:
    """Characters; OWLv2 masks a query whose first token is 0, so the start token is not 0."""
    vocab = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    for ch in "abcdefghijklmnopqrstuvwxyz":
        vocab[ch], vocab[ch + "</w>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[])


@pytest.fixture(scope="module")
def owl_folder(tmp_path_factory):
    return make_owlv2(tmp_path_factory.mktemp("owlv2"))


def make_owlv2(folder):
    """A tiny random OWLv2 detector saved with a character tokenizer into `folder`."""
    tokenizer = owl_tokenizer()
    layer = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = Owlv2Config(text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=16, bos_token_id=1,
                                          eos_token_id=2, pad_token_id=2, **layer),
                         vision_config=dict(image_size=32, patch_size=8, **layer), projection_dim=32)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Owlv2ForObjectDetection(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def depth_folder(tmp_path_factory):
    return make_dpt(tmp_path_factory.mktemp("dpt"))


def make_dpt(folder):
    """A tiny random DPT depth model saved into `folder`."""
    config = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=32,
                       patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[8, 16, 32, 32],
                       fusion_hidden_size=16)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        DPTForDepthEstimation(config).save_pretrained(folder)
    return str(folder)


def test_blip_vqa_reads_p_yes_from_the_answer_decoder(blip_folder):
    vqa = BlipVqa.from_pretrained(blip_folder)
    assert vqa.enc == vqa.tokenizer.get_vocab()["[ENC]"]
    questions = [["a green bench?", "a red car?"], [], ["the car?"]]
    answers = vqa(images(3), questions)
    assert [len(a) for a in answers] == [2, 0, 1] and all(0 < p < 1 for a in answers for p in a)
    assert vqa(images(3)[[0]], questions[:1])[0] == pytest.approx(answers[0], abs=1e-6)  # each image's own rows
    assert abs(answers[0][0] - answers[0][1]) > 1e-3  # the questions are read
    vqa.enc = None  # the tokenizer's [CLS] first, as transformers' own BLIP VQA: the official [ENC] matters
    assert vqa(images(3), questions)[0] != pytest.approx(answers[0], abs=1e-3)
    with pytest.raises(WeightsError, match=r"benchmark.blip_vqa='.*empty' cannot be loaded as BlipForQuestion"):
        BlipVqa.from_pretrained(str(blip_folder) + "/empty")


def test_owlv2_detects_each_images_own_names(owl_folder):
    detector = OwlDetector.from_pretrained(owl_folder)
    batch = images(3)
    found = detector(batch, [["cat", "dog"], [], ["cup"]], threshold=0.0, nms_iou=1.0)
    assert found[1] == {} and set(found[2]) == {"cup"}
    assert sum(len(d) for d in found[0].values()) == sum(len(d) for d in found[2].values()) == 16  # 4 × 4 patches
    for detections in found[0].values():
        assert [d.score for d in detections] == sorted((d.score for d in detections), reverse=True)
        assert all(0 <= d.score <= 1 and all(math.isfinite(v) for v in d.box) for d in detections)
    alone = detector(batch[[2]], [["cup"]], threshold=0.0, nms_iou=1.0)[0]  # the padded query rows change nothing
    assert [d.score for d in alone["cup"]] == pytest.approx([d.score for d in found[2]["cup"]], abs=1e-6)
    confident = detector(batch, [["cat", "dog"], [], ["cup"]], threshold=0.5, nms_iou=1.0)[0]
    assert {name: [d.score for d in found[0][name] if d.score > 0.5] for name in found[0]} == {
        name: [d.score for d in confident.get(name, [])] for name in found[0]}
    with torch.no_grad():  # every box the image's centre half: NMS keeps each name's best box
        for tensor in (detector.model.box_head.dense2.weight, detector.model.box_head.dense2.bias,
                       detector.model.box_bias):
            tensor.zero_()
    kept = detector(batch, [["cat", "dog"], [], ["cup"]], threshold=0.0, nms_iou=0.5)[0]
    assert {name: len(d) for name, d in kept.items()} == {name: 1 for name in found[0]}


def test_depth_and_clip_wrappers(depth_folder, tiny_clip_folder):
    depth = DepthEstimator.from_pretrained(depth_folder)(images(2))
    assert depth.shape == (2, 24, 32) and torch.isfinite(depth).all()
    assert torch.allclose(DepthEstimator.from_pretrained(depth_folder)(images(2)[[1]])[0], depth[1], atol=1e-5)
    encoder = ClipEncoder.from_pretrained(str(tiny_clip_folder))
    texts = ["a red cat", "two dogs"]
    cosines = torch.tensor(clip_cosines(encoder, images(2), texts))
    assert cosines.shape == (2,) and cosines.min() < 0 < cosines.max() <= 1  # the official score is not clamped
    clamped = ClipScore(encoder, scale=1.0)(images(2), texts)  # CLIP-S with w = 1 is the cosine clamped at 0
    assert torch.allclose(cosines.clamp(min=0), clamped, atol=1e-5)


def test_the_evaluator_scores_every_category_and_loads_only_what_they_need(blip_folder, owl_folder, depth_folder,
                                                                          tiny_clip_folder):
    cfg = T2ICompBenchConfig(evaluate=True, blip_vqa=blip_folder, clip=str(tiny_clip_folder), detector=owl_folder,
                             depth=depth_folder, detector_threshold=0.0, eval_batch_size=3)
    chosen = [prompts(c)[0] for c in CATEGORIES]
    scores = T2ICompBenchEvaluator(cfg)(images(8), chosen, CATEGORIES)
    assert scores.shape == (8,) and torch.isfinite(scores).all()
    assert (scores[[0, 1, 2, 3, 6, 7]] >= 0).all() and (scores[[0, 1, 2, 3, 6, 7]] <= 1).all()
    some = T2ICompBenchEvaluator(cfg)
    again = some(images(8)[[0, 3]], [chosen[0], chosen[3]], ["color", "spatial"])
    assert set(some.models) == {"blip_vqa", "detector"}
    assert again.tolist() == pytest.approx(scores[[0, 3]].tolist(), abs=1e-5)  # batch-size independent


# ---------- the settings and the CLI ----------

def test_prompts_per_category_keeps_the_noises_of_the_whole_set(config):
    few = BENCHMARKS["t2i_compbench"](config("benchmark=t2i_compbench", "benchmark.per_class=3",
                                             "benchmark.prompts_per_category=2",
                                             "benchmark.categories=[color,numeracy]").benchmark).conditions()
    assert few.categories == ["color"] * 2 + ["numeracy"] * 2 + ["color"] * 2 + ["numeracy"] * 2 + ["color"] * 2 + [
        "numeracy"] * 2
    whole = BENCHMARKS["t2i_compbench"](config("benchmark=t2i_compbench", "benchmark.per_class=3").benchmark
                                        ).conditions()
    position = {int(i): k for k, i in enumerate(whole.ids)}
    assert all(whole.prompts[position[int(i)]] == p for i, p in zip(few.ids, few.prompts))
    assert few.prompts[:2] == prompts("color")[:2]


def test_bad_settings_fail_in_one_line(config, tmp_path):
    base = ["model=flux_dev", "benchmark=t2i_compbench", "budget=one_sample", "verifier=clip_score"]
    for override, message in [
            ("benchmark.detector_threshold=1.5", "benchmark.detector_threshold=1.5 must be in [0, 1)"),
            ("benchmark.detector_nms_iou=0", "benchmark.detector_nms_iou=0.0 must be in (0, 1]"),
            ("benchmark.eval_batch_size=0", "benchmark.eval_batch_size=0 must be >= 1"),
            ("benchmark.prompts_per_category=-1", "benchmark.prompts_per_category=-1 must be >= 0"),
            (f"benchmark.blip_vqa={tmp_path}", f"benchmark.blip_vqa='{tmp_path}' is not a model folder"),
            ("benchmark.detector=/no/such/owlv2", "benchmark.detector='/no/such/owlv2' is not a model folder")]:
        evaluate = "benchmark.evaluate=true"
        with pytest.raises(ConfigError) as err:
            validate(config(*base, evaluate, override))
        assert message in str(err.value) and "\n" not in str(err.value)
    # A model that the chosen categories do not need is not read, nor are the models without evaluate.
    validate(config(*base, "benchmark.evaluate=true", "benchmark.categories=[spatial]",
                    f"benchmark.blip_vqa={tmp_path}", "benchmark.detector=google/owlv2-base-patch16-ensemble"))
    validate(config(*base, "benchmark.detector=/no/such/owlv2"))


def test_the_cli_reports_compbench_per_category(app, pixart_folder, blip_folder, owl_folder,  # noqa: F811
                                                tiny_clip_folder, tmp_path):
    job = tmp_path / "job"
    chosen = ["color", "spatial", "non_spatial", "numeracy"]
    code, _, err = app("model=pixart_sigma", f"model.weights={pixart_folder}", *PIXART_TINY, "model.search_steps=2",
                       "model.final_steps=2", "budget=one_sample", "verifier=clip_score",
                       f"verifier.clip={tiny_clip_folder}", "logger=none", "progress=false", "benchmark=t2i_compbench",
                       "benchmark.evaluate=true", f"benchmark.categories=[{','.join(chosen)}]",
                       "benchmark.per_class=1", "benchmark.prompts_per_category=1", f"benchmark.blip_vqa={blip_folder}",
                       f"benchmark.clip={tiny_clip_folder}", f"benchmark.detector={owl_folder}",
                       "benchmark.detector_threshold=0", "benchmark.chunk_size=3", f"hydra.run.dir={job}")
    assert code == 0, err[-2000:]
    metrics = json.loads((job / "metrics.json").read_text())
    with open(job / "results.csv", newline="") as f:
        records = list(csv.DictReader(f))
    assert [r["category"] for r in records] == chosen
    per_category = [metrics[f"compbench/{c}"] for c in chosen]
    assert per_category == pytest.approx([float(r["eval_compbench"]) for r in records])
    assert metrics["compbench"] == pytest.approx(sum(per_category) / 4)
    assert metrics["compbench_official_models"] == pytest.approx((per_category[0] + per_category[2]) / 2)
    assert metrics["compbench_owlv2_substitute"] == pytest.approx((per_category[1] + per_category[3]) / 2)
    # The scores are the evaluator's on the saved images.
    cfg = T2ICompBenchConfig(evaluate=True, blip_vqa=blip_folder, clip=str(tiny_clip_folder), detector=owl_folder,
                             detector_threshold=0.0)
    again = T2ICompBenchEvaluator(cfg)(load_selected(job), [r["prompt"] for r in records], chosen)
    assert again.tolist() == pytest.approx(per_category, abs=1e-5)
