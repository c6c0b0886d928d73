"""GenEval evaluation (Ghosh et al. 2023, "GenEval: An Object-Focused Framework for Evaluating Text-to-Image
Alignment"): an instance segmentation model finds the COCO objects in each image, a CLIP zero-shot classifier reads
the colour of each object it needs, and rules decide whether the image shows what its prompt's metadata asks.

The rules follow the official `evaluation/evaluate_images.py` of djghosh13/geneval with its default options
(threshold=0.3, counting_threshold=0.9, max_objects=16, max_overlap=1.0, position_threshold=0.1, bgcolor=#999,
crop=1): `select_objects` (per-class thresholding, the cap and optional NMS), `relative_position` and `judge`
(GenEval's `evaluate`) are pure functions of the detections, so they are tested on hand-built ones. The overall score
is GenEval's `summary_scores.py`: the mean over tasks of each task's fraction of correct images.

The models differ from the official ones, so parity with the official evaluator is not established:
- detector: transformers' Mask2Former Swin-S COCO instance (default `facebook/mask2former-swin-small-coco-instance`,
  Cheng et al.'s detectron2 weights) where GenEval uses mmdetection's Mask2Former Swin-S COCO checkpoint; the
  post-processing is mmdetection's (the top query×class probabilities times the mean mask probability, boxes from the
  masks), the resize is the transformers processor's.
- colour classifier: transformers CLIP ViT-L/14 (default `openai/clip-vit-large-patch14`), the OpenAI weights that
  GenEval loads through open_clip (`ViT-L-14`, pretrained="openai"); the crop is resized with torch's antialiased
  bicubic rather than PIL's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.config import PromptSetBenchmarkConfig

DEFAULT_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
# GenEval's colour prompts, averaged per colour as clip_benchmark's zero-shot classifier does.
COLOR_TEMPLATES = ("a photo of a {color} {object}", "a photo of a {color}-colored {object}",
                   "a photo of a {color} object")
BACKGROUND = 153 / 127.5 - 1  # GenEval's bgcolor #999 in [-1, 1]: what replaces the pixels outside an object's mask
# detectron2's COCO names (those of transformers' Mask2Former configs) where GenEval renamed the class.
COCO_ALIASES = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard",
                "hair dryer": "hair drier"}


@dataclass
class GenEvalConfig(PromptSetBenchmarkConfig):
    name: str = "geneval"
    evaluate: bool = False  # run GenEval's detector rules on the selected images (loads the two models below)
    detector: str = DEFAULT_DETECTOR  # transformers Mask2Former COCO instance model: hub id or local folder
    clip: str = DEFAULT_CLIP  # transformers CLIP for the colours: hub id or local folder
    eval_device: Optional[str] = None  # None: the job's device
    eval_batch_size: int = 16  # images per detector pass, object crops per CLIP pass
    threshold: float = 0.3  # detection confidence kept (strictly above), all tasks but counting
    counting_threshold: float = 0.9  # the same for the counting task
    max_objects: int = 16  # most confident detections kept per class
    max_overlap: float = 1.0  # per-class NMS: drop a detection whose box IoU with a kept one is >= this; 1: none
    position_margin: float = 0.1  # centre offsets shrink by this times the summed box sizes before reading a relation


@dataclass
class Detection:
    """One detected object: its box (x1, y1, x2, y2 in pixels, x2/y2 exclusive), confidence, optional boolean mask
    (H, W) and, once classified, its colour."""

    label: str  # GenEval's object name
    score: float
    box: tuple[float, float, float, float]
    mask: Optional[Tensor] = field(default=None, repr=False)
    color: Optional[str] = None


@dataclass
class Verdict:
    correct: bool
    reason: str  # why not, one line per failed clause; "" when correct


def object_names() -> list[str]:
    """GenEval's 80 object names (COCO's classes in their order)."""
    path = resources.files("inference_scaling") / "assets" / "benchmarks" / "geneval" / "object_names.txt"
    return path.read_text(encoding="utf-8").splitlines()


def geneval_labels(id2label: dict) -> dict[int, str]:
    """A detector's label ids → GenEval's object names, by name (spaces, `_` and `-` alike, any case; detectron2's
    `mouse`, `remote`, `keyboard` are GenEval's `computer mouse`, `tv remote`, `computer keyboard`). Labels of no
    GenEval object are left out; a detector that misses a GenEval object is refused."""
    names = set(object_names())
    mapping = {}
    for index, label in id2label.items():
        name = " ".join(str(label).lower().replace("_", " ").replace("-", " ").split())
        name = COCO_ALIASES.get(name, name)
        if name in names:
            mapping[int(index)] = name
    missing = sorted(names - set(mapping.values()))
    if missing:
        raise ValueError(f"the detector's labels (config.id2label) miss {len(missing)} of GenEval's 80 COCO objects, "
                         f"e.g. {missing[0]!r}; give a COCO instance segmentation model")
    return mapping


def box_iou(a, b) -> float:
    """IoU with GenEval's inclusive pixel convention (+1 on each side)."""
    area = lambda box: max(box[2] - box[0] + 1, 0) * max(box[3] - box[1] + 1, 0)  # noqa: E731
    inter = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def select_objects(detections: list[Detection], threshold: float, max_objects: int = 16,
                   max_overlap: float = 1.0) -> dict[str, list[Detection]]:
    """GenEval's kept objects per class, most confident first: score strictly above `threshold`, at most
    `max_objects` per class, then greedy NMS at IoU `max_overlap` (1: none). Classes with none are absent."""
    objects: dict[str, list[Detection]] = {}
    for label in dict.fromkeys(d.label for d in detections):
        ranked = sorted((d for d in detections if d.label == label and d.score > threshold),
                        key=lambda d: d.score, reverse=True)[:max_objects]
        kept = []
        while ranked:
            best = ranked.pop(0)
            kept.append(best)
            if max_overlap < 1:
                ranked = [d for d in ranked if box_iou(best.box, d.box) < max_overlap]
        if kept:
            objects[label] = kept
    return objects


def relative_position(box_a, box_b, margin: float = 0.1) -> set[str]:
    """Where box A lies relative to box B: each centre offset shrunk by `margin` times the two boxes' summed size on
    that axis; a relation holds where the shrunk offset, over the length of the full offset, passes 0.5 (image y
    grows downwards, so "above" is a negative dy)."""
    offset, revised = [], []
    for axis in (0, 1):
        centre_a, centre_b = (box_a[axis] + box_a[axis + 2]) / 2, (box_b[axis] + box_b[axis + 2]) / 2
        size = abs(box_a[axis + 2] - box_a[axis]) + abs(box_b[axis + 2] - box_b[axis])
        d = centre_a - centre_b
        offset.append(d)
        revised.append(math.copysign(max(abs(d) - margin * size, 0.0), d))
    if all(abs(r) < 1e-3 for r in revised):
        return set()
    norm = math.hypot(*offset)
    dx, dy = revised[0] / norm, revised[1] / norm
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def color_requests(objects: dict[str, list[Detection]], entry: dict) -> list[Detection]:
    """The detections whose colour `judge` reads: the `count` most confident of each class that asks for one (when
    that many were found), as GenEval classifies them."""
    asked = [req for req in entry.get("include", []) if "color" in req]
    return [d for req in asked if len(objects.get(req["class"], [])) >= req["count"]
            for d in objects[req["class"]][:req["count"]]]


def judge(objects: dict[str, list[Detection]], entry: dict, margin: float = 0.1) -> Verdict:
    """GenEval's rules (its `evaluate`): every `include` clause must hold (at least `count` objects of the class; the
    `count` most confident of the colour asked; each of them in the relation asked to each object of the clause it
    refers to) and no `exclude` clause (at least `count` objects of the class). `objects`: `select_objects`'s,
    with the colours of `color_requests` filled in."""
    reasons, matched_groups = [], []
    for req in entry.get("include", []):
        name, count = req["class"], req["count"]
        found = objects.get(name, [])[:count]
        matched = len(found) >= count
        if not matched:
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = [d.color for d in found]
                assert None not in colors, f"the colour of each {name} is needed (color_requests)"
                if colors.count(req["color"]) < count:
                    matched = False
                    reasons.append(f"expected {req['color']} {name}>={count}, found {colors.count(req['color'])} "
                                   f"{req['color']}; and " + ", ".join(f"{colors.count(c)} {c}" for c in COLORS
                                                                      if c in colors))
            if "position" in req and matched:
                relation, target = req["position"]
                if matched_groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    for obj in found:
                        for other in matched_groups[target]:
                            actual = relative_position(obj.box, other.box, margin)
                            if relation not in actual:
                                matched = False
                                reasons.append(f"expected {name} {relation} target, found "
                                               f"{' and '.join(sorted(actual))} target")
                                break
                        if not matched:
                            break
        matched_groups.append(found if matched else None)
    for req in entry.get("exclude", []):
        found = len(objects.get(req["class"], []))
        if found >= req["count"]:
            reasons.append(f"expected {req['class']}<{req['count']}, found {found}")
    return Verdict(not reasons, "\n".join(reasons))


def object_crop(image: Tensor, detection: Detection) -> Tensor:
    """What GenEval's colour classifier sees: the [-1, 1] image (3, H, W) with the pixels outside the object's mask
    set to grey #999, cropped to its box (rounded to pixels, at least one)."""
    if detection.mask is not None:
        image = torch.where(detection.mask.to(image.device), image, torch.full_like(image, BACKGROUND))
    x1, y1, x2, y2 = (int(round(v)) for v in detection.box)
    x1, y1 = min(max(x1, 0), image.shape[-1] - 1), min(max(y1, 0), image.shape[-2] - 1)
    return image[:, y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def geneval_scores(correct: Tensor, tasks: list[str], prompt_rows: list[int]) -> dict[str, float]:
    """GenEval's summary: `geneval_overall` the mean over the tasks present of each task's fraction of correct
    images; `geneval_images` the fraction of correct images; `geneval_prompts` the fraction of prompts with at least
    one correct image (`prompt_rows`: each image's prompt)."""
    correct = correct.bool()
    per_task = [correct[torch.tensor([t == task for t in tasks])].float().mean() for task in dict.fromkeys(tasks)]
    rows = torch.tensor(prompt_rows)
    per_prompt = [correct[rows == row].any().float() for row in rows.unique()]
    return {"geneval_overall": torch.stack(per_task).mean().item(), "geneval_images": correct.float().mean().item(),
            "geneval_prompts": torch.stack(per_prompt).mean().item()}


def mask_boxes(masks: Tensor) -> Tensor:
    """(N, 4) float boxes x1, y1, x2, y2 (x2/y2 exclusive) around non-empty boolean masks (N, H, W), as
    mmdetection's `mask2bbox`."""
    cols, rows = masks.any(dim=1), masks.any(dim=2)
    width, height = masks.shape[-1], masks.shape[-2]
    x1, y1 = cols.int().argmax(dim=1), rows.int().argmax(dim=1)
    x2, y2 = width - cols.flip(1).int().argmax(dim=1), height - rows.flip(1).int().argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).float()


def instance_detections(class_logits: Tensor, mask_logits: Tensor, padded: tuple[int, int], resized: tuple[int, int],
                        size: tuple[int, int], min_score: float) -> list[tuple[int, float, Tensor, Tensor]]:
    """Mask2Former's instance post-processing as mmdetection's (`MaskFormerFusionHead.instance_postprocess`): the
    top-Q (query, class) probabilities, each times the mean probability inside its mask, masks upsampled to the
    network input (`padded`), cropped to the resized image in it (`resized`) and resized to the image (`size`).
    `class_logits` (Q, K + 1), `mask_logits` (Q, h, w). Returns (label id, score, box, mask) with score > min_score."""
    queries, classes = class_logits.shape[0], class_logits.shape[1] - 1
    probs = class_logits.float().softmax(dim=-1)[:, :classes]
    top, index = probs.flatten().topk(queries)
    keep = top > min_score  # the final score is top × a mean probability <= 1: nothing else can pass
    top, labels, query = top[keep], index[keep] % classes, index[keep] // classes
    if len(top) == 0:
        return []
    masks = F.interpolate(mask_logits[query][None].float(), size=padded, mode="bilinear", align_corners=False)[0]
    masks = masks[:, :resized[0], :resized[1]]
    masks = F.interpolate(masks[None], size=size, mode="bilinear", align_corners=False)[0]
    binary = masks > 0
    mask_score = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    scores = top * mask_score
    keep = scores > min_score
    binary, scores, labels = binary[keep].cpu(), scores[keep].cpu(), labels[keep].cpu()
    boxes = mask_boxes(binary)
    return [(int(labels[i]), float(scores[i]), boxes[i], binary[i]) for i in range(len(scores))]


class Mask2FormerDetector:
    """A transformers Mask2Former COCO instance segmentation model: its detections of GenEval's objects."""

    def __init__(self, model, processor, device: str = "cpu", batch_size: int = 16):
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.batch_size = batch_size
        self.labels = geneval_labels(model.config.id2label)

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_DETECTOR, device: str = "cpu",
                        batch_size: int = 16) -> "Mask2FormerDetector":
        """Model and image processor from a hub id or a local folder (transformers' `from_pretrained`)."""
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        return cls(Mask2FormerForUniversalSegmentation.from_pretrained(name), AutoImageProcessor.from_pretrained(name),
                   device, batch_size)

    @torch.no_grad()
    def __call__(self, images: Tensor, min_score: float = 0.0) -> list[list[Detection]]:
        """Each [-1, 1] image's (B, 3, H, W) detections of GenEval objects with score > min_score."""
        size = tuple(images.shape[-2:])
        out = []
        for lo in range(0, len(images), self.batch_size):
            pixels = ((images[lo:lo + self.batch_size].float().cpu() + 1) / 2).clamp(0, 1)
            inputs = self.processor(images=list(pixels), do_rescale=False, return_tensors="pt")
            result = self.model(pixel_values=inputs["pixel_values"].to(self.device))
            padded = tuple(inputs["pixel_values"].shape[-2:])
            for i in range(len(pixels)):
                valid = inputs["pixel_mask"][i].bool()
                resized = (int(valid.any(1).sum()), int(valid.any(0).sum()))
                out.append([Detection(self.labels[label], score, tuple(box.tolist()), mask)
                            for label, score, box, mask in instance_detections(
                                result.class_queries_logits[i], result.masks_queries_logits[i], padded, resized,
                                size, min_score) if label in self.labels])
        return out


class ColorClassifier:
    """GenEval's zero-shot colour classifier: CLIP image embeddings of object crops against, per colour, the mean of
    the normalised embeddings of `COLOR_TEMPLATES` for the object's class."""

    def __init__(self, encoder, batch_size: int = 16):
        self.encoder = encoder  # a ClipEncoder
        self.batch_size = batch_size
        self.weights: dict[str, Tensor] = {}  # per object name, (10, D) colour embeddings

    @classmethod
    def from_pretrained(cls, clip: str = DEFAULT_CLIP, device: str = "cpu", batch_size: int = 16) -> "ColorClassifier":
        from inference_scaling.verifiers.clip_score import ClipEncoder

        return cls(ClipEncoder.from_pretrained(clip, device), batch_size)

    def color_weights(self, name: str) -> Tensor:
        if name not in self.weights:
            texts = [t.format(color=c, object=name) for c in COLORS for t in COLOR_TEMPLATES]
            embeds = F.normalize(self.encoder.embed_texts(texts), dim=-1).view(len(COLORS), len(COLOR_TEMPLATES), -1)
            self.weights[name] = F.normalize(embeds.mean(dim=1), dim=-1)
        return self.weights[name]

    @torch.no_grad()
    def __call__(self, crops: list[Tensor], names: list[str]) -> list[str]:
        """The colour of each [-1, 1] crop (3, h, w) of an object named in `names`."""
        from inference_scaling.verifiers._images import to_model_input

        colors = []
        for lo in range(0, len(crops), self.batch_size):
            pixels = torch.cat([to_model_input(c[None], self.encoder.image_size, self.encoder.device,
                                               self.encoder.dtype) for c in crops[lo:lo + self.batch_size]])
            pooled = self.encoder.model.vision_model(pixel_values=pixels).pooler_output
            embeds = F.normalize(self.encoder.model.visual_projection(pooled).float(), dim=-1)
            for embed, name in zip(embeds, names[lo:lo + self.batch_size]):
                colors.append(COLORS[int((self.color_weights(name) @ embed).argmax())])
        return colors


class GenEvalEvaluator:
    """GenEval's verdict on each image: detect, keep each class's confident objects, classify the colours the
    prompt's metadata asks about, judge."""

    def __init__(self, detector, classifier, cfg: GenEvalConfig):
        self.detector, self.classifier, self.cfg = detector, classifier, cfg

    @classmethod
    def from_config(cls, cfg: GenEvalConfig, device: str = "cpu") -> "GenEvalEvaluator":
        device = cfg.eval_device or device
        return cls(Mask2FormerDetector.from_pretrained(cfg.detector, device, cfg.eval_batch_size),
                   ColorClassifier.from_pretrained(cfg.clip, device, cfg.eval_batch_size), cfg)

    def __call__(self, images: Tensor, entries: list[dict]) -> list[Verdict]:
        """`images` (B, 3, H, W) in [-1, 1], judged as the 8-bit images GenEval reads, `eval_batch_size` at a time
        (their masks are held meanwhile); `entries`: each image's metadata (a row of `evaluation_metadata.jsonl`)."""
        assert len(images) == len(entries), f"{len(images)} images but {len(entries)} metadata entries"
        step = self.cfg.eval_batch_size
        return [v for lo in range(0, len(images), step) for v in self.judge_batch(images[lo:lo + step],
                                                                                   entries[lo:lo + step])]

    def judge_batch(self, images: Tensor, entries: list[dict]) -> list[Verdict]:
        from inference_scaling.datasets import from_uint8, to_uint8

        images = from_uint8(to_uint8(images.float().cpu()))
        detections = self.detector(images, min(self.cfg.threshold, self.cfg.counting_threshold))
        objects = [select_objects(found, self.cfg.counting_threshold if entry["tag"] == "counting"
                                  else self.cfg.threshold, self.cfg.max_objects, self.cfg.max_overlap)
                   for found, entry in zip(detections, entries)]
        requests = [(i, d) for i, (objs, entry) in enumerate(zip(objects, entries))
                    for d in color_requests(objs, entry)]
        colors = self.classifier([object_crop(images[i], d) for i, d in requests], [d.label for _, d in requests])
        for (_, detection), color in zip(requests, colors):
            detection.color = color
        return [judge(objs, entry, self.cfg.position_margin) for objs, entry in zip(objects, entries)]
