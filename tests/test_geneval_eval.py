"""GenEval's evaluator: its rules on hand-built detections of every task, synthetic drawn images judged through the
evaluator, Mask2Former's post-processing on hand-built logits, the two model wrappers on tiny random models saved
as transformers folders, the settings' checks, and one run through the CLI with benchmark.evaluate=true."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from test_scale_out import app  # noqa: F401 (the in-process CLI fixture)
from test_vp_models import PIXART_TINY, pixart_folder  # noqa: F401 (the tiny PixArt-Σ fixture)

from inference_scaling.benchmarks import BENCHMARKS
from inference_scaling.config import ConfigError, validate
from inference_scaling.evaluation.geneval import (COCO_ALIASES, COLORS, ColorClassifier, Detection, GenEvalConfig,
                                                  GenEvalEvaluator, Mask2FormerDetector, color_requests,
                                                  geneval_labels, geneval_scores, instance_detections, judge,
                                                  mask_boxes, object_crop, object_names, relative_position,
                                                  select_objects)
from inference_scaling.store import load_selected

pytestmark = pytest.mark.usefixtures("one_thread")
DETECTRON2_NAMES = {geneval: coco for coco, geneval in COCO_ALIASES.items() if coco != "hair dryer"}


def entry(prompt: str) -> dict:
    """The metadata row of a GenEval prompt, from the shipped evaluation_metadata.jsonl."""
    rows = [e for e in BENCHMARKS["geneval"](GenEvalConfig()).metadata() if e["prompt"] == prompt]
    assert len(rows) == 1, prompt
    return rows[0]


def det(label: str, box, score: float = 0.95, color=None) -> Detection:
    return Detection(label, score, tuple(float(v) for v in box), color=color)


def verdict(detections: list[Detection], prompt: str, threshold: float = 0.3, margin: float = 0.1):
    meta = entry(prompt)
    return judge(select_objects(detections, threshold), meta, margin)


# The rules on hand-built detections, one known answer each.

def test_single_and_two_objects_need_each_object_above_the_threshold():
    assert verdict([det("bench", (0, 0, 10, 10))], "a photo of a bench").correct
    missing = verdict([det("bench", (0, 0, 10, 10), score=0.3), det("cow", (0, 0, 9, 9))], "a photo of a bench")
    assert (missing.correct, missing.reason) == (False, "expected bench>=1, found 0")  # 0.3 is not above 0.3
    prompt = "a photo of a bench and a sports ball"
    assert verdict([det("sports ball", (20, 0, 30, 9)), det("bench", (0, 0, 10, 10))], prompt).correct
    assert verdict([det("bench", (0, 0, 10, 10)), det("bench", (20, 0, 30, 9))], prompt).reason == \
        "expected sports ball>=1, found 0"


def test_counting_needs_the_exact_count_at_its_own_threshold():
    prompt = "a photo of two clocks"  # include clock >= 2, exclude clock >= 3
    clocks = [det("clock", (10 * k, 0, 10 * k + 8, 8), score) for k, score in enumerate([0.99, 0.95, 0.85])]
    assert verdict(clocks[:2], prompt, threshold=0.9).correct
    assert verdict(clocks, prompt, threshold=0.9).correct  # the third, at 0.85, is not counted at 0.9
    three = verdict(clocks, prompt, threshold=0.3)
    assert (three.correct, three.reason) == (False, "expected clock<3, found 3")
    assert verdict(clocks[:1], prompt, threshold=0.9).reason == "expected clock>=2, found 1"


def test_a_colour_is_read_on_the_most_confident_objects_only():
    prompt = "a photo of a blue fire hydrant"
    objects = select_objects([det("fire hydrant", (0, 0, 9, 9), 0.5), det("fire hydrant", (20, 0, 29, 9), 0.8)], 0.3)
    assert color_requests(objects, entry(prompt)) == [objects["fire hydrant"][0]]  # the 0.8 one
    objects["fire hydrant"][0].color = "blue"
    assert judge(objects, entry(prompt)).correct
    objects["fire hydrant"][0].color = "red"
    wrong = judge(objects, entry(prompt))
    assert (wrong.correct, wrong.reason) == (False, "expected blue fire hydrant>=1, found 0 blue; and 1 red")
    with pytest.raises(AssertionError, match="colour of each fire hydrant"):
        judge(select_objects([det("fire hydrant", (0, 0, 9, 9))], 0.3), entry(prompt))


def test_colour_attributes_bind_each_colour_to_its_object():
    prompt = "a photo of a purple wine glass and a black apple"
    right = [det("wine glass", (0, 0, 9, 9), color="purple"), det("apple", (20, 0, 29, 9), color="black")]
    swapped = [det("wine glass", (0, 0, 9, 9), color="black"), det("apple", (20, 0, 29, 9), color="purple")]
    assert verdict(right, prompt).correct
    assert verdict(swapped, prompt).reason == ("expected purple wine glass>=1, found 0 purple; and 1 black\n"
                                               "expected black apple>=1, found 0 black; and 1 purple")


def test_relative_position_with_the_margin():
    # Boxes 10 wide: the offset dx shrinks by 0.1 × (10 + 10) = 2, and counts where (dx - 2) / dx > 0.5, i.e. dx > 4.
    assert relative_position((5, 0, 15, 10), (0, 0, 10, 10)) == {"right of"}
    assert relative_position((3, 0, 13, 10), (0, 0, 10, 10)) == set()
    assert relative_position((3, 0, 13, 10), (0, 0, 10, 10), margin=0.0) == {"right of"}
    assert relative_position((0, 0, 10, 10), (5, 0, 15, 10)) == {"left of"}
    assert relative_position((0, 0, 10, 10), (0, 30, 10, 40)) == {"above"}  # y grows downwards
    assert relative_position((30, 30, 40, 40), (0, 0, 10, 10)) == {"right of", "below"}  # diagonal: both
    assert relative_position((0, 0, 10, 10), (0, 0, 10, 10)) == set()


def test_position_compares_every_object_with_its_target():
    prompt = "a photo of a dog right of a teddy bear"  # include teddy bear, then dog right of [0]
    assert verdict([det("teddy bear", (0, 0, 10, 10)), det("dog", (30, 0, 40, 10))], prompt).correct
    left = verdict([det("teddy bear", (30, 0, 40, 10)), det("dog", (0, 0, 10, 10))], prompt)
    assert (left.correct, left.reason) == (False, "expected dog right of target, found left of target")
    close = verdict([det("teddy bear", (0, 0, 10, 10)), det("dog", (3, 0, 13, 10))], prompt)
    assert close.reason == "expected dog right of target, found  target"  # within the margin: no relation
    assert verdict([det("teddy bear", (0, 0, 10, 10)), det("dog", (3, 0, 13, 10))], prompt, margin=0).correct
    alone = verdict([det("dog", (30, 0, 40, 10))], prompt)
    assert alone.reason == "expected teddy bear>=1, found 0\nno target for dog to be right of"


def test_overall_is_the_mean_of_the_task_accuracies():
    correct = torch.tensor([1, 1, 1, 0, 0, 1.0])  # single_object 3/3, counting 1/3 (prompts 0, 0, 1 / 9, 9, 9)
    scores = geneval_scores(correct, ["single_object"] * 3 + ["counting"] * 3, [0, 0, 1, 9, 9, 9])
    assert scores == pytest.approx({"geneval_overall": (1 + 1 / 3) / 2, "geneval_images": 4 / 6,
                                    "geneval_prompts": 3 / 3})


def test_per_class_selection_caps_and_optional_nms():
    boxes = [det("cup", (0, 0, 10, 10), 0.9), det("cup", (1, 0, 11, 10), 0.8), det("cup", (50, 50, 60, 60), 0.7)]
    assert [d.score for d in select_objects(boxes, 0.3)["cup"]] == [0.9, 0.8, 0.7]
    assert [d.score for d in select_objects(boxes, 0.3, max_objects=2)["cup"]] == [0.9, 0.8]
    assert [d.score for d in select_objects(boxes, 0.3, max_overlap=0.5)["cup"]] == [0.9, 0.7]  # IoU 10/12 dropped
    assert select_objects(boxes, 0.95) == {}


def test_detector_labels_map_to_geneval_names():
    names = object_names()
    detectron2 = {k: DETECTRON2_NAMES.get(n, n) for k, n in enumerate(names)}  # transformers' COCO configs
    assert geneval_labels(detectron2) == dict(enumerate(names))
    assert detectron2[64] == "mouse" and geneval_labels(detectron2)[64] == "computer mouse"
    panoptic = {**{k + 1: n.replace(" ", "-") for k, n in detectron2.items()}, 0: "sky-other-merged"}
    assert geneval_labels(panoptic) == {k + 1: n for k, n in enumerate(names)}  # other labels left out
    with pytest.raises(ValueError, match="miss 80 of GenEval's 80 COCO objects, e.g. 'airplane'"):
        geneval_labels({k: f"LABEL_{k}" for k in range(80)})


# Synthetic images: coloured shapes drawn at known places, their detections given by hand (boxes and masks from
# the drawing), colours read by a nearest-palette classifier standing in for CLIP. Each case has a known verdict.

PALETTE = {"red": (1, -1, -1), "orange": (1, 0, -1), "yellow": (1, 1, -1), "green": (-1, 1, -1), "blue": (-1, -1, 1),
           "purple": (0, -1, 0.6), "pink": (1, 0.5, 0.6), "brown": (0, -0.5, -1), "black": (-1, -1, -1),
           "white": (1, 1, 1)}
SIZE = 64


def shape_mask(box, shape: str) -> torch.Tensor:
    """A filled rectangle, or a cross of two bars a fifth of the box wide (a third of its area)."""
    x1, y1, x2, y2 = box
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    if shape == "rect":
        mask[y1:y2, x1:x2] = True
    else:
        w, h = x2 - x1, y2 - y1
        mask[y1:y2, x1 + 2 * w // 5:x1 + 3 * w // 5] = True
        mask[y1 + 2 * h // 5:y1 + 3 * h // 5, x1:x2] = True
    return mask


class Drawn:
    """A scene of (label, colour, box, score[, shape]) objects painted in order, and the detections of exactly
    them."""

    def __init__(self, *objects):
        self.objects = [(*o, "rect") if len(o) == 4 else o for o in objects]

    def image(self) -> torch.Tensor:
        image = torch.zeros(3, SIZE, SIZE)  # mid-grey background
        for _, color, box, _, shape in self.objects:
            image[:, shape_mask(box, shape)] = torch.tensor(PALETTE[color], dtype=torch.float32).view(3, 1)
        return image

    def detections(self) -> list[Detection]:
        masks = [shape_mask(box, shape) for _, _, box, _, shape in self.objects]
        return [Detection(label, score, tuple(mask_boxes(mask[None])[0].tolist()), mask)
                for (label, _, _, score, _), mask in zip(self.objects, masks)]


class HandDetector:
    """The detections of the scenes, batch after batch, each batch checked against its drawn images."""

    def __init__(self, scenes):
        self.scenes = list(scenes)

    def __call__(self, images, min_score):
        batch, self.scenes = self.scenes[:len(images)], self.scenes[len(images):]
        assert torch.allclose(images, torch.stack([s.image() for s in batch]), atol=1 / 127.5)  # 8-bit
        return [[d for d in s.detections() if d.score > min_score] for s in batch]


def palette_colors(crops, names):
    """The palette colour nearest to most of each crop's pixels, GenEval's grey background left out."""
    table = torch.tensor(list(PALETTE.values()))
    out = []
    for crop in crops:
        pixels = crop.flatten(1).T
        pixels = pixels[(pixels - (153 / 127.5 - 1)).abs().amax(dim=1) > 0.02]  # not the #999 background
        out.append(list(PALETTE)[int(torch.cdist(pixels, table).argmin(dim=1).mode().values)])
    return out


def clocks(*scores):
    return Drawn(*[("clock", "white", (2 + 15 * k, 4, 14 + 15 * k, 16), s) for k, s in enumerate(scores)])


HYDRANT_ON_CAR = Drawn(("car", "red", (0, 0, 64, 50), 0.9), ("fire hydrant", "blue", (20, 10, 40, 60), 0.9, "cross"))
SYNTHETIC = [  # (prompt, scene, expected verdict)
    ("a photo of a bench", Drawn(("bench", "red", (10, 10, 40, 30), 0.9)), True),
    ("a photo of a bench", Drawn(("bench", "red", (10, 10, 40, 30), 0.25)), False),
    ("a photo of a bench and a sports ball",
     Drawn(("bench", "red", (2, 2, 20, 20), 0.9), ("sports ball", "white", (30, 30, 40, 40), 0.6)), True),
    ("a photo of a bench and a sports ball", Drawn(("bench", "red", (2, 2, 20, 20), 0.9)), False),
    ("a photo of two clocks", clocks(0.97, 0.93), True),
    ("a photo of two clocks", clocks(0.97, 0.93, 0.5), True),  # 0.5 is below counting's 0.9
    ("a photo of two clocks", clocks(0.97, 0.93, 0.92), False),
    ("a photo of two clocks", clocks(0.97, 0.8), False),
    ("a photo of four handbags", Drawn(*[("handbag", "brown", (2 + 15 * k, 30, 14 + 15 * k, 44), 0.95)
                                         for k in range(4)]), True),
    ("a photo of a blue fire hydrant", Drawn(("fire hydrant", "blue", (20, 10, 40, 60), 0.9)), True),
    ("a photo of a blue fire hydrant", Drawn(("fire hydrant", "red", (20, 10, 40, 60), 0.9)), False),
    ("a photo of a blue fire hydrant", HYDRANT_ON_CAR, True),  # its box is mostly red car, its mask blue
    ("a photo of a dog right of a teddy bear",
     Drawn(("teddy bear", "yellow", (2, 20, 22, 40), 0.9), ("dog", "black", (40, 20, 60, 40), 0.9)), True),
    ("a photo of a dog right of a teddy bear",
     Drawn(("teddy bear", "yellow", (40, 20, 60, 40), 0.9), ("dog", "black", (2, 20, 22, 40), 0.9)), False),
    ("a photo of a dog right of a teddy bear",  # 6 px to the right for boxes 20 wide: inside the margin
     Drawn(("teddy bear", "yellow", (10, 2, 30, 22), 0.9), ("dog", "black", (16, 40, 36, 60), 0.9)), False),
    ("a photo of a wine glass above a kite",
     Drawn(("kite", "green", (20, 40, 40, 60), 0.9), ("wine glass", "white", (22, 2, 38, 20), 0.9)), True),
    ("a photo of a wine glass above a kite",
     Drawn(("kite", "green", (20, 2, 40, 20), 0.9), ("wine glass", "white", (22, 40, 38, 60), 0.9)), False),
    ("a photo of a purple wine glass and a black apple",
     Drawn(("wine glass", "purple", (0, 0, 30, 30), 0.9), ("apple", "black", (34, 34, 60, 60), 0.9)), True),
    ("a photo of a purple wine glass and a black apple",
     Drawn(("wine glass", "black", (0, 0, 30, 30), 0.9), ("apple", "purple", (34, 34, 60, 60), 0.9)), False),
    ("a photo of a green bus and a purple microwave",
     Drawn(("bus", "green", (0, 0, 30, 30), 0.9), ("microwave", "blue", (34, 34, 60, 60), 0.9)), False),
]


def test_synthetic_scenes_get_their_known_verdicts_through_the_evaluator():
    scenes = [scene for _, scene, _ in SYNTHETIC]
    evaluator = GenEvalEvaluator(HandDetector(scenes), palette_colors, GenEvalConfig(eval_batch_size=7))
    verdicts = evaluator(torch.stack([s.image() for s in scenes]), [entry(prompt) for prompt, _, _ in SYNTHETIC])
    assert [v.correct for v in verdicts] == [known for _, _, known in SYNTHETIC], [v.reason for v in verdicts]


def test_the_crop_is_masked_to_grey_then_cut_to_the_box():
    image, hydrant = HYDRANT_ON_CAR.image(), HYDRANT_ON_CAR.detections()[1]
    assert object_crop(image, hydrant).shape == (3, 50, 20)
    assert palette_colors([object_crop(image, hydrant)], ["fire hydrant"]) == ["blue"]
    unmasked = Detection("fire hydrant", 0.9, hydrant.box)
    assert palette_colors([object_crop(image, unmasked)], ["fire hydrant"]) == ["red"]  # GenEval masks for this
    grey = torch.full((3, SIZE, SIZE), 153 / 127.5 - 1)
    assert torch.equal(object_crop(image, hydrant), torch.where(hydrant.mask, image, grey)[:, 10:60, 20:40])


# Mask2Former's post-processing and the model wrappers.

def test_instance_postprocessing_on_hand_built_logits():
    # Two queries, two classes + no-object; masks at stride 4 of a 16 × 16 input holding a 16 × 12 resized image.
    class_logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 0.0, 6.0]])  # query 0: class 0; query 1: no object
    mask_logits = torch.full((2, 4, 4), -1000.0)  # saturated: the mean mask probability is 1
    mask_logits[0, 1:3, 0:2] = 1000.0  # rows 1-2, columns 0-1: input pixels 4..11 × 0..7 after bilinear upsampling
    p = torch.tensor([4.0, 0.0, 0.0]).softmax(0)[0].item()
    found = instance_detections(class_logits, mask_logits, (16, 16), (16, 12), (16, 12), min_score=0.05)
    assert [(label, box.tolist()) for label, _, box, _ in found] == [(0, [0.0, 4.0, 8.0, 12.0])]
    assert found[0][1] == pytest.approx(p, rel=1e-6) and found[0][3].shape == (16, 12)
    (_, _, box, mask), = instance_detections(class_logits, mask_logits, (16, 16), (16, 12), (32, 24), min_score=0.05)
    assert box.tolist() == [0.0, 8.0, 16.0, 24.0] and mask.shape == (32, 24)  # to the image's size
    assert instance_detections(class_logits, mask_logits, (16, 16), (16, 12), (16, 12), min_score=p) == []


def test_mask_boxes_end_after_the_last_pixel():
    mask = torch.zeros(1, 8, 10, dtype=torch.bool)
    mask[0, 2:5, 3:9] = True
    assert mask_boxes(mask).tolist() == [[3.0, 2.0, 9.0, 5.0]]


def tiny_mask2former(folder):
    """A Mask2Former with a 1-block-per-stage Swin of width 8, 8 queries and the 80 COCO classes under their
    detectron2 names, saved with a small image processor."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor,
                              SwinConfig)

    names = [DETECTRON2_NAMES.get(n, n) for n in object_names()]
    backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=2,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
                               dim_feedforward=32, num_queries=8, id2label=dict(enumerate(names)),
                               label2id={n: k for k, n in enumerate(names)})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    processor.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def mask2former_folder(tmp_path_factory):
    return tiny_mask2former(tmp_path_factory.mktemp("mask2former"))


def random_images(n: int, h: int = 24, w: int = 40, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_detector_loads_a_folder_and_returns_well_formed_detections(mask2former_folder):
    detector = Mask2FormerDetector.from_pretrained(mask2former_folder, batch_size=2)
    images = random_images(3)
    found = detector(images, min_score=0.0)
    assert len(found) == 3 and all(found)
    names = set(object_names())
    for detections in found:
        for d in detections:
            assert d.label in names and 0 < d.score <= 1
            assert d.mask.shape == (24, 40) and d.mask.dtype == torch.bool and d.mask.any()
            assert d.box == tuple(mask_boxes(d.mask[None])[0].tolist())
    alone = detector(images[1:2], 0.0)[0]  # the same detections in a batch of one
    assert [d.label for d in alone] == [d.label for d in found[1]]
    assert [d.score for d in alone] == pytest.approx([d.score for d in found[1]], rel=1e-5)
    best = max(d.score for x in found for d in x)
    assert detector(images, min_score=best) == [[], [], []]


def test_the_colour_classifier_averages_its_templates_and_names_a_colour(tiny_clip_folder):
    import torch.nn.functional as F

    classifier = ColorClassifier.from_pretrained(str(tiny_clip_folder), batch_size=2)
    texts = classifier.encoder.embed_texts(["a photo of a red cup", "a photo of a red-colored cup",
                                            "a photo of a red object"])
    expected = F.normalize(F.normalize(texts, dim=-1).mean(0), dim=-1)
    with torch.no_grad():
        weights = classifier.color_weights("cup")
    assert weights.shape == (10, 16) and torch.allclose(weights[0], expected, atol=1e-5)
    crops = [random_images(1, h, w, seed=h)[0] for h, w in [(5, 9), (30, 12), (16, 16)]]
    colors = classifier(crops, ["cup", "dog", "cup"])
    assert len(colors) == 3 and set(colors) <= set(COLORS)
    assert ColorClassifier(classifier.encoder, batch_size=1)(crops, ["cup", "dog", "cup"]) == colors


def test_bad_settings_fail_in_one_line(config):
    base = ["model=flux_dev", "benchmark=geneval", "budget.nfe=28", "verifier=clip_score"]
    for override, message in [("benchmark.threshold=1.5", "benchmark.threshold=1.5 must be in [0, 1]"),
                              ("benchmark.counting_threshold=-0.1", "benchmark.counting_threshold=-0.1 must be in"),
                              ("benchmark.max_objects=0", "benchmark.max_objects=0 must be >= 1"),
                              ("benchmark.position_margin=-1", "benchmark.position_margin=-1.0 must be >= 0"),
                              ("benchmark.prompts_per_category=-2", "benchmark.prompts_per_category=-2 must be >= 0")]:
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            validate(config(*base, override))


def test_a_few_prompts_per_task_keep_their_ids(config):
    conditions = BENCHMARKS["geneval"](config("benchmark=geneval", "benchmark.per_class=2",
                                              "benchmark.prompts_per_category=1").benchmark).conditions()
    firsts = [0, 80, 179, 259, 353, 453]  # the first prompt of each task in the published order
    assert conditions.ids.tolist() == firsts + [k + 553 for k in firsts]
    assert conditions.categories[:6] == ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
    benchmark = BENCHMARKS["geneval"](GenEvalConfig())  # evaluate=false: no models load, no GenEval metrics
    assert benchmark.per_condition(random_images(2), conditions.take(torch.arange(2))) == {}
    assert benchmark.evaluate(random_images(2), conditions.take(torch.arange(2))) == {}


def test_the_cli_reports_geneval_overall_and_per_task(app, pixart_folder, mask2former_folder,  # noqa: F811
                                                      tiny_clip_folder, tmp_path):
    job = tmp_path / "job"
    code, _, err = app("model=pixart_sigma", f"model.weights={pixart_folder}", *PIXART_TINY, "model.search_steps=2",
                       "model.final_steps=2", "budget=one_sample", "verifier=clip_score",
                       f"verifier.clip={tiny_clip_folder}", "logger=none", "progress=false", "benchmark=geneval",
                       "benchmark.evaluate=true", "benchmark.per_class=1", "benchmark.prompts_per_category=1",
                       f"benchmark.detector={mask2former_folder}", f"benchmark.clip={tiny_clip_folder}",
                       "benchmark.threshold=0", "benchmark.counting_threshold=0", "benchmark.chunk_size=4",
                       f"hydra.run.dir={job}")
    assert code == 0, err[-2000:]
    metrics = json.loads((job / "metrics.json").read_text())
    with open(job / "results.csv", newline="") as f:
        records = list(csv.DictReader(f))
    tasks = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
    assert [r["category"] for r in records] == tasks
    per_task = [metrics[f"geneval/{t}"] for t in tasks]
    assert per_task == [float(r["eval_geneval"]) for r in records]
    assert metrics["geneval_overall"] == pytest.approx(sum(per_task) / 6)
    # The verdicts are those of the evaluator on the saved images and each condition's own metadata row.
    cfg = GenEvalConfig(detector=mask2former_folder, clip=str(tiny_clip_folder), threshold=0, counting_threshold=0)
    rows = [entry(r["prompt"]) for r in records]
    again = GenEvalEvaluator.from_config(cfg)(load_selected(job), rows)
    assert [float(v.correct) for v in again] == per_task
