"""T2I-CompBench(++) evaluation (Huang et al. 2023, "T2I-CompBench: A Comprehensive Benchmark for Open-world
Compositional Text-to-image Generation"; T2I-CompBench++, TPAMI 2025): each prompt is scored by its category's
evaluator, following the official code (github.com/Karine-Huang/T2I-CompBench) where its model exists in
transformers.

- color, shape, texture: BLIP-VQA (`BLIPvqa_eval/BLIP_vqa.py`). Each of the prompt's first 8 noun phrases is asked
  as "<phrase>?"; P(yes) = p(yes) / (p(yes) + p(no)) from the answer decoder's distribution over its first token
  (the official `vqa_prob`); the score is the product over the phrases (1 for a prompt without one). Default
  `Salesforce/blip-vqa-capfilt-large`: the transformers port of `model_base_vqa_capfilt_large.pth`, the checkpoint
  the official code loads.
- non_spatial: CLIPScore as `CLIPScore_eval/CLIP_similarity.py` computes it: the plain cosine of CLIP ViT-B/32's
  image and prompt embeddings (no 2.5 weight, no clamp at 0). Default `openai/clip-vit-base-patch32`.
- spatial, 3d_spatial, numeracy: the official UniDet rules (`UniDet_eval/2D_spatial_eval.py`, `3D_spatial_eval.py`,
  `numeracy_eval.py`) run on a SUBSTITUTE detector, OWLv2 (default `google/owlv2-base-patch16-ensemble`) prompted
  with the prompt's own objects, since UniDet has no maintained package. Its confidences are not UniDet's, and the
  rules add them into the score, so these numbers are not comparable with published T2I-CompBench ones.
  - spatial: 0.25·s₁ + 0.25·s₂ + position/2 with `determine_position` (IoU threshold 0.1; "near" within 150 px of
    UniDet's 479-px input, here 150/479 of the image's shorter side), 0.25·s for one object found, 0 if the sum is
    below 0.5.
  - 3d_spatial: the same sum (no 0.5 cut) with the official depth rule: the mean depth of each box in a MiDaS
    DPT-Hybrid depth map (default `Intel/dpt-hybrid-midas`, the official depth network) orders the two objects, and
    the score is 1 when the boxes overlap with IoU > 0.5, IoU/0.5 when they overlap less, 0 when they do not.
  - numeracy: for each (number, object) of the prompt, half its weight if the object is found, half if the count
    of its detections (same-object duplicates with IoU or containment > 0.9 merged, as the official code) is the
    number.
- complex: the official "3-in-1" (`3_in_1_eval/3_in_1.py`): the mean of the BLIP-VQA score, the spatial score (of
  the nouns around the relation) and the CLIPScore of the prompt without its adjectives, over the parts the
  benchmark's own lists give the prompt (`complex_val_spatial.txt`: attribute and spatial; `complex_val_action.txt`:
  attribute and action; the rest all three). It inherits the detector substitute.

Apart from the detector, what differs from the official code (so even the BLIP-VQA and CLIPScore numbers are
close to, not verified equal to, published ones):
- No spaCy here: noun phrases, the objects around a relation (the official code takes the nearest nouns) and the
  adjectives that complex's CLIPScore drops come from a rule-based chunker over closed word lists (`noun_phrases`),
  written for these prompt sets and tested on them: exact on the "a green bench and a blue bowl" prompts, close on
  the long sentences. Relational words ("the left" of "on the left of", "front" of "in front of") are never
  phrases (the official filter drops 'top', 'the side', 'the left', 'the right' only).
- The detector is asked for the prompt's noun (a girl is a "girl", not UniDet's "person"); of two objects with the
  same name (4 spatial prompts, "a desk on the left of a desk") the two best detections are compared in the order
  that fits better, where the official code compares one box with itself; "on top of" (complex prompts) counts as
  "on the top of", where the official `determine_position` has no branch for it and scores 0; depth is read at
  [y, x] (the official code indexes its depth map [x, y]); OWLv2's boxes go through per-object NMS
  (`detector_nms_iou`), as UniDet's do inside the detector.
- Images are quantised to 8 bits, as the official code reads PNGs, then resized with torch (antialiased) to each
  model's input size (BLIP and DPT at their transformers configs' size, 384 px, where the official code feeds 480).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from inference_scaling.config import PromptSetBenchmarkConfig

DEFAULT_BLIP_VQA = "Salesforce/blip-vqa-capfilt-large"
DEFAULT_CLIP = "openai/clip-vit-base-patch32"
DEFAULT_DETECTOR = "google/owlv2-base-patch16-ensemble"
DEFAULT_DEPTH = "Intel/dpt-hybrid-midas"
ATTRIBUTE_CATEGORIES = ("color", "shape", "texture")
DETECTOR_CATEGORIES = ("spatial", "3d_spatial", "numeracy")


@dataclass
class T2ICompBenchConfig(PromptSetBenchmarkConfig):
    name: str = "t2i_compbench"
    # Run the category evaluators on the selected images (eval_compbench per record, compbench/<category>); loads
    # up to four models, only those the chosen categories need.
    evaluate: bool = False
    blip_vqa: str = DEFAULT_BLIP_VQA  # BLIP VQA (color, shape, texture, complex): hub id or local folder
    clip: str = DEFAULT_CLIP  # CLIP (non_spatial, complex): hub id or local folder
    detector: str = DEFAULT_DETECTOR  # OWLv2, UniDet's SUBSTITUTE (spatial, 3d_spatial, numeracy, complex)
    depth: str = DEFAULT_DEPTH  # DPT depth model (3d_spatial): hub id or local folder
    eval_device: Optional[str] = None  # None: the job's device
    eval_batch_size: int = 16  # images per forward pass of each evaluator
    detector_threshold: float = 0.1  # OWLv2 confidence kept (UniDet's official 0.5 is on another scale)
    detector_nms_iou: float = 0.5  # per-object NMS of OWLv2's boxes: drop a box with IoU above this with a kept one


# ---------------------------------------------------------------------------------------------------------------
# Word lists of the chunker (lower case). Attribute words are the adjectives of the benchmark's prompts; the
# "modifier nouns" are nouns that these prompts use as attributes ("a glass table", "a teardrop pendant").

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
ARTICLES = _words("a an the")
DETERMINERS = _words("a an the this these those his her its their our my your some many several each every another "
                     "other both no any all most few one two three four five six seven eight nine ten")
PREPOSITIONS = _words("of with in on at near to by from above below under over between through behind into onto "
                      "beside besides for against across along around about inside outside among beneath upon "
                      "within without toward towards after before during past like up down off out amid "
                      "underneath beyond throughout via than as next")
CONJUNCTIONS = _words("and or but while which who whom whose that where when if because so yet nor")
PRONOUNS = _words("it they them he she him we us i me you itself themselves himself herself")
ADVERBS = _words("nearby together very too also just not even still there here then quite rather almost")
AUXILIARIES = _words("is are was were be been being am has have had do does did could will would should may might "
                     "must")
# Verbs, but nouns after a determiner or an attribute ("the unique features", "a red rose").
VERBS = _words("sits sit sat holds hold held features feature shines shine shone flash flashes reads lay lies stood "
               "stands hung hangs hang kept keeps led leads made makes rises fell falls lit cut cuts wrote writes "
               "drove drives flew flies grew grows swam swims told tells blew sank slept spread spun strode woke "
               "looks look seems seem rests sleeps cast burst rose")
ADJECTIVES = _words(
    # colours
    "red yellow green blue purple pink brown black white gray grey beige tan whitish golden silver "
    # shapes and sizes
    "round rectangular triangular circular oblong spherical cubic conical cylindrical pyramidal pentagonal "
    "hexagonal octagonal big small tall short long large little tiny huge narrow wide thick thin giant "
    # textures and materials as adjectives
    "metallic wooden fluffy soft hard smooth rough shiny sleek fuzzy furry silky glossy matte bumpy spiky prickly "
    "jagged striped textured polished rusted rusty cracked peeling crisp crunchy crispy juicy sticky slimy wet damp "
    "dry icy slushy lumpy bulky woolen velvety checkered sloped "
    # the other adjectives of the prompts
    "warm cool cold hot sharp bright dark dull clean dirty dusty old new ancient modern vibrant intricate bold "
    "gentle delicate fresh fragrant sweet sour spicy tender rich heavy cozy comfortable calm quiet busy "
    "translucent opaque iridescent shimmering curvy curved straight angular rugged rocky thorny dim fiery grand "
    "lush unique towering sparkling glowing floral stainless plain elegant sturdy ripe tart murky choppy reedy "
    "deep distant greasy delicious colorful multicolored beautiful serene romantic luxurious treacherous peaceful "
    "sugary brilliant therapeutic injured tired stunning natural early only same favorite precious timeless "
    "priceless plump ornate stylish savory delectable curious hardworking enduring dappled twisted chilly "
    "geometric seasonal urban daily tasty unlikely picturesque celestial vintage empty whole cute happy sad "
    "pretty ugly lovely friendly curly defining visible useful necessary low high ready perfect "
    "healthful")
MODIFIER_NOUNS = _words("orange gold diamond crescent teardrop square oval glass rubber leather fabric plastic wood "
                        "marble stone metal cotton wool silk paper velvet ceramic crystal")
ATTRIBUTES = ADJECTIVES | MODIFIER_NOUNS
NOT_VERBS = _words("bed red sled shed speed seed ceiling ring earring painting building flooring wedding duckling "
                   "seating stitching sapling morning evening engineering storytelling steering living dining "
                   "swimming bowling parking vending clothing thing something everything nothing string king wing "
                   "spring")
NOT_ADVERBS = _words("butterfly lily jelly family belly bully fly holly")
RELATIONAL = _words("left right top bottom side front")  # "on the left of": part of the relation, never an object
BOUNDARIES = PREPOSITIONS | CONJUNCTIONS | PRONOUNS | ADVERBS | AUXILIARIES
TOKEN = re.compile(r"[A-Za-z0-9][\w'’:-]*|[^\w\s]")
MAX_PHRASES = 8  # BLIP_vqa.py's np_num: the noun phrases asked about


def _after_modifier(prev: str, current: list[str]) -> bool:
    """Whether the word after `prev` in the phrase being read is still a modifier's place: after a determiner, an
    attribute, a listing comma or an adverb ("the freshly brewed coffee")."""
    return bool(current) and (prev in ATTRIBUTES or prev in DETERMINERS or prev in (",", "and")
                              or (prev.endswith("ly") and prev not in NOT_ADVERBS))


def _verb_form(word: str, prev: str, after: str, current: list[str]) -> bool:
    """An -ed or -ing word used as a verb: after a noun ("the hands provided") or a pronoun, or alone before a
    boundary ("are sitting on"); not in a modifier's place ("the injured athlete", "blue sloped ceiling")."""
    if len(word) < 4 or not word.endswith(("ed", "ing")) or word in ATTRIBUTES or word in NOT_VERBS:
        return False
    if current:
        return not _after_modifier(prev, current)
    return (not after or not after[0].isalnum() or after in BOUNDARIES or after in DETERMINERS or prev in PRONOUNS
            or (after.endswith("ly") and after not in NOT_ADVERBS))


def _modifiers_only(current: list[str]) -> bool:
    return all(w in ATTRIBUTES or w in DETERMINERS for w in current) and any(w in ATTRIBUTES for w in current)


def _role(word: str, prev: str, after: str, current: list[str]) -> str:
    """What a token does to the phrase being read: "join" it, "start" a new one, or "break" it (and is dropped)."""
    if word == ",":  # "the soft, gentle touch" but "two white sheep, a black goat"
        keep = _modifiers_only(current) and after[:1].isalnum() and after not in DETERMINERS
        return "join" if keep else "break"
    if word == "and":  # "a black and white cat"
        keep = _modifiers_only(current) and prev in ATTRIBUTES and after in ATTRIBUTES
        return "join" if keep else "break"
    if not word[0].isalnum() or word in BOUNDARIES:
        return "break"
    if word in DETERMINERS:  # an article always opens a phrase ("the other a white seat")
        opens = word in ARTICLES or any(w not in DETERMINERS for w in current)
        return "start" if current and opens else "join"
    if word in VERBS or (word.endswith("ly") and word not in NOT_ADVERBS):  # a verb or an adverb, but a noun or
        return "join" if _after_modifier(prev, current) else "break"  # adjective in a modifier's place
    return "break" if _verb_form(word, prev, after, current) else "join"


def _trailing(prev: str, word: str) -> bool:
    """An adjective or relational word after a noun ends no phrase: "the only things visible", "pieces left"."""
    return (word in ADJECTIVES or word in RELATIONAL) and prev not in ADJECTIVES and prev not in DETERMINERS


def _is_phrase(words: list[str]) -> bool:
    """A noun phrase has a head: not only determiners and adjectives, nor a relational word ("the left")."""
    content = [w for w in words if w not in DETERMINERS]
    return bool(content) and content[-1] not in ADJECTIVES and content[-1][0].isalpha() and not (
        len(content) == 1 and content[0] in RELATIONAL)


def noun_phrases(prompt: str, limit: Optional[int] = MAX_PHRASES) -> list[str]:
    """The prompt's noun phrases in order, as spelled in it (rule-based, in place of spaCy's `noun_chunks`):
    "A black and white cat sits in a white sink." → ["A black and white cat", "a white sink"]."""
    tokens = list(TOKEN.finditer(prompt))
    words = [t.group().lower() for t in tokens]
    phrases, current = [], []  # current: the token indices of the phrase being read

    def close():
        while current and (words[current[-1]] in (",", "and")
                           or len(current) > 1 and _trailing(words[current[-2]], words[current[-1]])):
            current.pop()
        if current and _is_phrase([words[k] for k in current]):
            phrases.append(prompt[tokens[current[0]].start():tokens[current[-1]].end()])
        current.clear()

    for k, word in enumerate(words):
        prev, after = words[k - 1] if k else "", words[k + 1] if k + 1 < len(words) else ""
        role = _role(word, prev, after, [words[j] for j in current])
        if role != "join":
            close()
        if role != "break":
            current.append(k)
    close()
    return phrases[:limit]


def object_name(phrase: str) -> str:
    """What the detector is asked for: the phrase without determiners and attributes, its last word kept
    ("the brown coat rack" → "coat rack", "a metallic desk lamp" → "desk lamp")."""
    words = [w for w in phrase.lower().replace(",", " ").split() if w not in DETERMINERS]
    return " ".join([w for w in words[:-1] if w not in ATTRIBUTES] + words[-1:])


def without_adjectives(prompt: str) -> str:
    """The prompt's tokens but its adjectives, joined by spaces (complex's CLIPScore text; spaCy's ADJ in the
    official code)."""
    return " ".join(t for t in TOKEN.findall(prompt) if t.lower() not in ADJECTIVES)


# ---------------------------------------------------------------------------------------------------------------
# Relations and counts read from prompts.

SPATIAL_2D = ("on side of", "next to", "near", "on the left of", "on the right of", "on the bottom of",
              "on the top of", "on top of")  # the official vocab_spatial, in its search order
SPATIAL_3D = ("in front of", "behind", "hidden by")
SAME_AS = {"on top of": "on the top of", "hidden by": "behind"}
NEAR = ("next to", "on side of", "near")
NEAR_DISTANCE = 150 / 479  # the official 150 px on UniDet's input (shorter side 479), per shorter side


@dataclass(frozen=True)
class Relation:
    subject: str  # the detector's name of the object the relation is about
    relation: str  # one of SPATIAL_2D / SPATIAL_3D with "on top of" → "on the top of", "hidden by" → "behind"
    reference: str


def parse_relation(prompt: str, vocabulary: Sequence[str] = SPATIAL_2D) -> Optional[Relation]:
    """The first relation of `vocabulary` found in the prompt (in the vocabulary's order, as the official search),
    between the last noun phrase before it and the first after it; None without one."""
    low = prompt.lower()
    for phrase in vocabulary:
        found = re.search(rf"\b{phrase}\b", low)
        if found:
            before, after = noun_phrases(prompt[:found.start()], None), noun_phrases(prompt[found.end():], None)
            if not (before and after):
                return None
            return Relation(object_name(before[-1]), SAME_AS.get(phrase, phrase), object_name(after[0]))
    return None


@functools.cache
def _asset_lines(name: str) -> tuple[str, ...]:
    path = resources.files("inference_scaling") / "assets" / "benchmarks" / "t2i_compbench" / name
    return tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@functools.cache
def singular_of() -> dict[str, str]:
    """Numeracy's objects (the official `new_objects.txt`): plural → singular."""
    pairs = [line.split(" - ") for line in _asset_lines("new_objects.txt")]
    return {plural.strip().lower(): singular.strip().lower() for singular, plural in reversed(pairs)}


def count_requests(prompt: str) -> list[tuple[str, int]]:
    """(object, number) for each number word followed by one of numeracy's objects, as the official parser:
    "two apples, one bag and a dog" → [("apple", 2), ("bag", 1), ("dog", 1)]."""
    plural = singular_of()
    singular = set(plural.values())
    words = re.findall(r"[a-z]+", prompt.lower())
    requests = []
    for word, noun in zip(words, words[1:]):
        if word not in NUMBERS:
            continue
        if noun in singular and NUMBERS[word] == 1:
            requests.append((noun, 1))
        elif noun in plural:
            requests.append((plural[noun], NUMBERS[word]))
        elif noun in singular:
            requests.append((noun, NUMBERS[word]))
    return requests


def complex_parts(prompt: str) -> tuple[str, ...]:
    """The parts 3-in-1 averages for a complex prompt, by the official lists (matched on the text before the first
    full stop, lower case, as `3_in_1.py`)."""
    key = lambda line: line.split(".")[0].lower().strip()  # noqa: E731
    if key(prompt) in {key(line) for line in _asset_lines("complex_val_spatial.txt")}:
        return ("attribute", "spatial")
    if key(prompt) in {key(line) for line in _asset_lines("complex_val_action.txt")}:
        return ("attribute", "action")
    return ("attribute", "spatial", "action")


# ---------------------------------------------------------------------------------------------------------------
# The official scoring rules, on boxes (x0, y0, x1, y1) in pixels.

@dataclass(frozen=True)
class Detection:
    score: float
    box: tuple[float, float, float, float]


def _area(box) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def _intersection(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_iou(a, b) -> float:
    union = _area(a) + _area(b) - _intersection(a, b)
    return _intersection(a, b) / union if union > 0 else 0.0


def position_score(relation: str, a, b, side: float, iou_threshold: float = 0.1) -> float:
    """The official `determine_position` for 2D relations of box A to box B; `side`: the image's shorter side in
    pixels ("near" is within NEAR_DISTANCE of it). Image y grows downwards."""
    dx = (b[0] + b[2]) / 2 - (a[0] + a[2]) / 2
    dy = (b[1] + b[3]) / 2 - (a[1] + a[3]) / 2
    if relation in NEAR:
        limit = NEAR_DISTANCE * side
        return 1.0 if abs(dx) < limit or abs(dy) < limit else limit / max(abs(dx), abs(dy))
    toward = {"on the left of": dx > 0, "on the right of": dx < 0, "on the top of": dy > 0, "on the bottom of": dy < 0}
    along, across = (abs(dx), abs(dy)) if relation in ("on the left of", "on the right of") else (abs(dy), abs(dx))
    if not toward[relation] or along <= across:
        return 0.0
    overlap = box_iou(a, b)
    return 1.0 if overlap < iou_threshold else iou_threshold / overlap


def _mean_depth(depth: Tensor, box) -> float:
    h, w = depth.shape
    x0, y0 = min(max(int(box[0]), 0), w - 1), min(max(int(box[1]), 0), h - 1)
    x1, y1 = max(min(int(box[2]), w), x0 + 1), max(min(int(box[3]), h), y0 + 1)
    return depth[y0:y1, x0:x1].mean().item()


def depth_score(relation: str, a, b, depth: Tensor, iou_threshold: float = 0.5) -> float:
    """The official 3D rule for A "in front of" / "behind" B: the boxes' mean depth in an inverse-depth map (H, W)
    (MiDaS: larger is nearer) must order them, and the score grows with their overlap (1 above `iou_threshold`)."""
    nearer = _mean_depth(depth, a) - _mean_depth(depth, b)
    if not (nearer > 0 if relation == "in front of" else nearer < 0):
        return 0.0
    overlap = box_iou(a, b)
    if overlap > iou_threshold:
        return 1.0
    return overlap / iou_threshold if 0 < overlap < iou_threshold else 0.0


def relation_score(relation: Optional[Relation], found: dict[str, list[Detection]], side: float,
                   depth: Optional[Tensor] = None) -> float:
    """UniDet's score of a relation from the best detection of each object: 0.25 per object's confidence plus half
    the position score when both are found, a quarter of the confidence when one is; 2D scores below 0.5 are 0 (the
    3D rule, given `depth`, keeps them). Of two objects of one name, the best two detections in the order that fits
    the relation better."""
    if relation is None:
        return 0.0
    subjects, references = found.get(relation.subject, []), found.get(relation.reference, [])
    if relation.subject == relation.reference:
        pairs = [(subjects[0], subjects[1]), (subjects[1], subjects[0])] if len(subjects) > 1 else []
    else:
        pairs = [(subjects[0], references[0])] if subjects and references else []
    if pairs:
        position = lambda a, b: (depth_score(relation.relation, a.box, b.box, depth) if depth is not None  # noqa: E731
                                 else position_score(relation.relation, a.box, b.box, side))
        score = max(0.25 * a.score + 0.25 * b.score + position(a, b) / 2 for a, b in pairs)
    else:
        alone = subjects or references
        score = 0.25 * alone[0].score if alone else 0.0
    return score if depth is not None or score >= 0.5 else 0.0


def merge_duplicates(detections: list[Detection]) -> list[Detection]:
    """numeracy_eval.py's merge of one object's detections (most confident first): a box with IoU > 0.9 with a
    kept one, or with more than 0.9 of either inside the other, is that object again."""
    def same(a, b) -> bool:
        inter = _intersection(a, b)
        return box_iou(a, b) > 0.9 or inter > 0.9 * _area(a) or inter > 0.9 * _area(b)

    kept: list[Detection] = []
    for d in detections:
        if not any(same(d.box, k.box) for k in kept):
            kept.append(d)
    return kept


def numeracy_score(requests: list[tuple[str, int]], counts: dict[str, int]) -> float:
    """numeracy_eval.py: each request weighs 1/len(requests), half for its object found, half for the right count;
    0 for a prompt without a request."""
    if not requests:
        return 0.0
    weight = 1 / len(requests)
    return sum(0.5 * weight * (counts.get(name, 0) > 0) + 0.5 * weight * (counts.get(name, 0) == number)
               for name, number in requests)


def three_in_one(parts: Sequence[str], attribute: float, spatial: float, action: float) -> float:
    """3_in_1.py: the mean of the parts the prompt has."""
    values = {"attribute": attribute, "spatial": spatial, "action": action}
    return sum(values[p] for p in parts) / len(parts)


# ---------------------------------------------------------------------------------------------------------------
# What each prompt asks of the models, and its score from their answers.

@dataclass
class PromptPlan:
    category: str
    questions: list[str] = field(default_factory=list)  # BLIP-VQA questions (the attribute part)
    clip_text: Optional[str] = None  # CLIPScore's text (non_spatial; complex's action part)
    relation: Optional[Relation] = None  # spatial, 3d_spatial; complex's spatial part
    counts: list[tuple[str, int]] = field(default_factory=list)  # numeracy's (object, number) requests
    parts: tuple[str, ...] = ()  # complex: what 3-in-1 averages

    @property
    def objects(self) -> list[str]:
        """The names the detector is asked for, each once."""
        names = [name for name, _ in self.counts]
        if self.relation is not None:
            names += [self.relation.subject, self.relation.reference]
        return list(dict.fromkeys(names))


def questions(prompt: str) -> list[str]:
    """BLIP_vqa.py's questions: "<noun phrase>?" for each of the prompt's first 8 noun phrases."""
    return [f"{phrase}?" for phrase in noun_phrases(prompt)]


def plan_prompt(prompt: str, category: str) -> PromptPlan:
    if category in ATTRIBUTE_CATEGORIES:
        return PromptPlan(category, questions=questions(prompt))
    if category == "non_spatial":
        return PromptPlan(category, clip_text=prompt)
    if category == "spatial":
        return PromptPlan(category, relation=parse_relation(prompt, SPATIAL_2D))
    if category == "3d_spatial":
        return PromptPlan(category, relation=parse_relation(prompt, SPATIAL_3D))
    if category == "numeracy":
        return PromptPlan(category, counts=count_requests(prompt))
    if category == "complex":
        parts = complex_parts(prompt)
        return PromptPlan(category, questions=questions(prompt), parts=parts,
                          relation=parse_relation(prompt, SPATIAL_2D) if "spatial" in parts else None,
                          clip_text=without_adjectives(prompt) if "action" in parts else None)
    raise ValueError(f"{category!r} is not a T2I-CompBench category")


def score_plan(plan: PromptPlan, answers: Sequence[float], cosine: Optional[float],
               found: dict[str, list[Detection]], depth: Optional[Tensor], side: float) -> float:
    """A prompt's score from its image's answers: P(yes) per question, CLIP cosine, detections by object name (most
    confident first), the inverse-depth map (3d_spatial) and the image's shorter side in pixels."""
    attribute = math.prod(answers)
    if plan.category in ATTRIBUTE_CATEGORIES:
        return attribute
    if plan.category == "non_spatial":
        return cosine
    if plan.category == "numeracy":
        counts = {name: len(merge_duplicates(found.get(name, []))) for name, _ in plan.counts}
        return numeracy_score(plan.counts, counts)
    if plan.category == "3d_spatial":
        return relation_score(plan.relation, found, side, depth) if depth is not None else 0.0
    spatial = relation_score(plan.relation, found, side)
    if plan.category == "spatial":
        return spatial
    return three_in_one(plan.parts, attribute, spatial, cosine if cosine is not None else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# The models (transformers, from a hub id or a local folder).

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # BLIP's and OWLv2's normalisation (OpenAI CLIP's)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _load(loader, name: str, key: str):
    """`loader.from_pretrained(name)`, refused in one line naming `benchmark.<key>`."""
    from inference_scaling.weights import WeightsError

    try:
        return loader.from_pretrained(name)
    except (OSError, ValueError, KeyError, TypeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise WeightsError(f"benchmark.{key}={name!r} cannot be loaded as {loader.__name__} ({first})") from None


def _pixels(images: Tensor, size: int, mean: Sequence[float], std: Sequence[float], device: str,
            mode: str = "bicubic") -> Tensor:
    """[-1, 1] images (B, 3, H, W) resized whole to size × size (antialiased) and normalised, on `device`."""
    x = ((images.to(device=device, dtype=torch.float32) + 1) / 2).clamp(0, 1)
    x = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True).clamp(0, 1)
    return (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)


def pre_question(question: str) -> str:
    """BLIP's question preprocessing (`data/utils.py`): lower case, without . ! " ( ) * # : ; ~, at most 50 words."""
    question = re.sub(r"[.!\"()*#:;~]", "", question.lower()).rstrip(" ")
    return " ".join(question.split(" ")[:50])


class BlipVqa:
    """BLIP VQA's P(yes) to yes/no questions, read from the answer decoder's distribution over its first token:
    p(yes) / (p(yes) + p(no)) (the official `vqa_prob`). The question's first token is BLIP's [ENC] where the
    tokenizer has it, as the official model encodes questions."""

    def __init__(self, model, tokenizer, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer, self.device = tokenizer, device
        self.size = int(model.config.vision_config.image_size)
        vocab = tokenizer.get_vocab()
        missing = [token for token in ("yes", "no") if token not in vocab]
        if missing:
            raise ValueError(f"the BLIP tokenizer has no {missing[0]!r} token; give a BLIP VQA model")
        self.yes, self.no, self.enc = vocab["yes"], vocab["no"], vocab.get("[ENC]")

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_BLIP_VQA, device: str = "cpu") -> "BlipVqa":
        from transformers import AutoTokenizer, BlipForQuestionAnswering

        return cls(_load(BlipForQuestionAnswering, name, "blip_vqa"), _load(AutoTokenizer, name, "blip_vqa"), device)

    @torch.no_grad()
    def __call__(self, images: Tensor, questions: list[list[str]]) -> list[list[float]]:
        """P(yes) of each question of each [-1, 1] image (B, 3, H, W)."""
        rows = [i for i, asked in enumerate(questions) for _ in asked]
        if not rows:
            return [[] for _ in questions]
        vision = self.model.vision_model(pixel_values=_pixels(images, self.size, CLIP_MEAN, CLIP_STD, self.device))
        image_embeds = vision.last_hidden_state[rows]
        tokens = self.tokenizer([pre_question(q) for asked in questions for q in asked], padding="longest",
                                truncation=True, max_length=35, return_tensors="pt").to(self.device)
        ids = tokens["input_ids"].clone()
        if self.enc is not None:
            ids[:, 0] = self.enc
        states = self.model.text_encoder(
            input_ids=ids, attention_mask=tokens["attention_mask"], encoder_hidden_states=image_embeds,
            encoder_attention_mask=torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=self.device),
        ).last_hidden_state
        start = torch.full((len(rows), 1), self.model.decoder_start_token_id, device=self.device)
        logits = self.model.text_decoder(input_ids=start, encoder_hidden_states=states,
                                         encoder_attention_mask=tokens["attention_mask"]).logits[:, 0]
        p_yes = logits[:, [self.yes, self.no]].float().softmax(dim=-1)[:, 0].cpu().tolist()
        out, k = [], 0
        for asked in questions:
            out.append(p_yes[k:k + len(asked)])
            k += len(asked)
        return out


class OwlDetector:
    """OWLv2 (Minderer et al. 2023) asked for each image's own object names ("a photo of a <name>"): boxes in the
    image's pixels, each labelled with its best name, above a confidence, after per-name NMS. The image is padded
    to a square at its bottom and right, as transformers' `Owlv2ImageProcessor` does."""

    def __init__(self, model, tokenizer, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer, self.device = tokenizer, device
        self.size = int(model.config.vision_config.image_size)
        self.text_length = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_DETECTOR, device: str = "cpu") -> "OwlDetector":
        from transformers import AutoTokenizer, Owlv2ForObjectDetection

        return cls(_load(Owlv2ForObjectDetection, name, "detector"), _load(AutoTokenizer, name, "detector"), device)

    @torch.no_grad()
    def __call__(self, images: Tensor, names: list[list[str]], threshold: float = 0.1,
                 nms_iou: float = 0.5) -> list[dict[str, list[Detection]]]:
        """Each [-1, 1] image's (B, 3, H, W) detections of its `names`, by name, most confident first."""
        from torchvision.ops import batched_nms

        height, width = images.shape[-2:]
        side = max(height, width)
        square = F.pad((images + 1) / 2, (0, side - width, 0, side - height), value=0.0) * 2 - 1
        pixels = _pixels(square, self.size, CLIP_MEAN, CLIP_STD, self.device, mode="bilinear")
        queries = max(1, max(len(n) for n in names))
        tokens = self.tokenizer([f"a photo of a {name}" for n in names for name in n] or [""], padding="max_length",
                                truncation=True, max_length=self.text_length, return_tensors="pt")
        ids = torch.zeros(len(names) * queries, self.text_length, dtype=torch.long)
        mask = torch.zeros_like(ids)
        mask[:, 0] = 1  # a padded query (first token 0) is masked out by OWLv2; one attended token keeps it finite
        rows = [i * queries + q for i, n in enumerate(names) for q in range(len(n))]
        if rows:
            ids[rows], mask[rows] = tokens["input_ids"], tokens["attention_mask"]
        out = self.model(input_ids=ids.to(self.device), pixel_values=pixels, attention_mask=mask.to(self.device))
        found = []
        for i, asked in enumerate(names):
            if not asked:
                found.append({})
                continue
            scores, labels = out.logits[i, :, :len(asked)].float().sigmoid().max(dim=-1)
            cx, cy, w, h = (out.pred_boxes[i].float() * side).unbind(-1)
            boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
            keep = scores > threshold
            scores, labels, boxes = scores[keep], labels[keep], boxes[keep]
            kept = batched_nms(boxes, scores, labels, nms_iou)  # most confident first
            by_name: dict[str, list[Detection]] = {}
            for k in kept.tolist():
                by_name.setdefault(asked[labels[k]], []).append(Detection(float(scores[k]), tuple(boxes[k].tolist())))
            found.append(by_name)
        return found


class DepthEstimator:
    """A transformers DPT depth model (MiDaS DPT-Hybrid by default, the official 3D depth network): relative inverse
    depth (larger is nearer) at each image's pixels."""

    def __init__(self, model, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device
        self.size = int(model.config.image_size)

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_DEPTH, device: str = "cpu") -> "DepthEstimator":
        from transformers import DPTForDepthEstimation

        return cls(_load(DPTForDepthEstimation, name, "depth"), device)

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        """(B, H, W) float32 on the CPU for [-1, 1] images (B, 3, H, W)."""
        pixels = _pixels(images, self.size, (0.5,) * 3, (0.5,) * 3, self.device, mode="bilinear")
        depth = self.model(pixel_values=pixels).predicted_depth.float()
        return F.interpolate(depth[:, None], size=images.shape[-2:], mode="bilinear", align_corners=True)[:, 0].cpu()


def clip_cosines(encoder, images: Tensor, texts: list[str]) -> list[float]:
    """The official CLIPScore: cos(E_image, E_text) row by row, with a `ClipEncoder`."""
    with torch.no_grad():
        return F.cosine_similarity(encoder.embed_images(images), encoder.embed_texts(texts), dim=-1).cpu().tolist()


def _clip_encoder(name: str, device: str):
    from transformers import CLIPModel, CLIPTokenizer

    from inference_scaling.verifiers.clip_score import ClipEncoder

    return ClipEncoder(_load(CLIPModel, name, "clip"), _load(CLIPTokenizer, name, "clip"), device)


MODELS = {"blip_vqa": BlipVqa.from_pretrained, "clip": _clip_encoder, "detector": OwlDetector.from_pretrained,
          "depth": DepthEstimator.from_pretrained}


class T2ICompBenchEvaluator:
    """Each image's score by its prompt's category; each model loads on first use, so a run of some categories
    loads only what they need."""

    def __init__(self, cfg: T2ICompBenchConfig, device: str = "cpu"):
        self.cfg = cfg
        self.device = cfg.eval_device or device
        self.models: dict = {}

    def model(self, key: str):
        if key not in self.models:
            self.models[key] = MODELS[key](getattr(self.cfg, key), self.device)
        return self.models[key]

    def __call__(self, images: Tensor, prompts: Sequence[str], categories: Sequence[str]) -> Tensor:
        """(B,) float32 scores of [-1, 1] images (B, 3, H, W), read as the 8-bit images the official scripts load."""
        from inference_scaling.datasets import from_uint8, to_uint8

        assert len(images) == len(prompts) == len(categories), f"{len(images)} images, {len(prompts)} prompts"
        images = from_uint8(to_uint8(images.float().cpu()))
        plans = [plan_prompt(p, c) for p, c in zip(prompts, categories)]
        size = self.cfg.eval_batch_size
        scores = [s for lo in range(0, len(plans), size) for s in self.score(images[lo:lo + size], plans[lo:lo + size])]
        return torch.tensor(scores, dtype=torch.float32)

    def score(self, images: Tensor, plans: list[PromptPlan]) -> list[float]:
        answers: list[list[float]] = [[] for _ in plans]
        cosines: list[Optional[float]] = [None] * len(plans)
        found: list[dict] = [{} for _ in plans]
        depths: list[Optional[Tensor]] = [None] * len(plans)
        ask = [i for i, p in enumerate(plans) if p.questions]
        if ask:
            for i, a in zip(ask, self.model("blip_vqa")(images[ask], [plans[i].questions for i in ask])):
                answers[i] = a
        compare = [i for i, p in enumerate(plans) if p.clip_text is not None]
        if compare:
            for i, c in zip(compare, clip_cosines(self.model("clip"), images[compare],
                                                  [plans[i].clip_text for i in compare])):
                cosines[i] = c
        detect = [i for i, p in enumerate(plans) if p.objects]
        if detect:
            for i, f in zip(detect, self.model("detector")(images[detect], [plans[i].objects for i in detect],
                                                           self.cfg.detector_threshold, self.cfg.detector_nms_iou)):
                found[i] = f
        sense = [i for i, p in enumerate(plans) if p.category == "3d_spatial" and p.relation is not None]
        if sense:
            for i, d in zip(sense, self.model("depth")(images[sense])):
                depths[i] = d
        side = float(min(images.shape[-2:]))
        return [score_plan(p, answers[i], cosines[i], found[i], depths[i], side) for i, p in enumerate(plans)]


NEEDED_BY = {"blip_vqa": (*ATTRIBUTE_CATEGORIES, "complex"), "clip": ("non_spatial", "complex"),
             "detector": (*DETECTOR_CATEGORIES, "complex"), "depth": ("3d_spatial",)}
SUBSTITUTED = (*DETECTOR_CATEGORIES, "complex")  # the categories scored through the OWLv2 substitute for UniDet


def needed_models(categories: Sequence[str]) -> list[str]:
    """The config keys of the models that the categories (all when empty) need."""
    return [key for key, users in NEEDED_BY.items() if not categories or any(c in users for c in categories)]


def check_model_source(key: str, name: str) -> None:
    """A hub id, or an existing folder holding config.json (hub ids are only checked when they load)."""
    from pathlib import Path

    if not name.strip():
        raise ValueError(f"benchmark.{key} is empty; give a hub id or a local folder")
    path = Path(name).expanduser()
    looks_local = name.startswith(("/", "~", "./", "../")) or path.exists()
    if looks_local and not (path / "config.json").is_file():
        raise ValueError(f"benchmark.{key}={name!r} is not a model folder (no config.json there); give a hub id or "
                         f"a folder written by save_pretrained")
