"""Benchmarks fix the condition set a job searches for, the model family that draws it, and its evaluation."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from inference_scaling import scenes
from inference_scaling.datasets import DIGIT_NAMES, load_digits
from inference_scaling.scenes import ConditionError
from inference_scaling.store import as_image_set


PRC_MIN_SAMPLES = 4  # torch-fidelity's precision/recall: the 3rd nearest neighbour of each sample within its set


@dataclass
class Conditions:
    """A benchmark's condition set; model adapters encode it into their own condition rows."""

    labels: Tensor  # (C,) class indices or (C, F) scene tokens: what class verifiers and evaluation read
    ids: Tensor  # (C,) condition ids: candidate i of condition c has noise (seed, ids[c], i)
    prompts: list[str]  # the condition as text: what text encoders and text verifiers read, and image captions
    categories: Optional[list[str]] = None  # per condition, where the benchmark reports per category

    def take(self, positions: Tensor) -> "Conditions":
        """The conditions at `positions` (a chunk or a shard), with their global ids."""
        rows = positions.tolist()
        return Conditions(self.labels[positions], self.ids[positions], [self.prompts[i] for i in rows],
                          None if self.categories is None else [self.categories[i] for i in rows])


class DigitsBenchmark:
    """Class-balanced digit conditions; IS/FID/KID/PRC in the digits classifier's features against all
    1,797 digits, and class accuracy."""

    name = "digits"
    condition_kind = "digits"
    min_conditions = PRC_MIN_SAMPLES
    min_conditions_why = "precision/recall compare each sample with its 3 nearest neighbours"
    primary_metric = "fid"

    def __init__(self, cfg):
        self.cfg = cfg

    def conditions(self) -> Conditions:
        """`per_class` conditions for each digit, interleaved 0, 1, …, 9, 0, … so any prefix is balanced."""
        labels = torch.arange(10).repeat(self.cfg.per_class)
        return Conditions(labels, torch.arange(len(labels)), [DIGIT_NAMES[y] for y in labels.tolist()])

    def per_condition(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, Tensor]:
        """Each condition's evaluation: whether the digits classifier reads its class (the mean is `accuracy`)."""
        from inference_scaling.evaluation.fidelity import class_hits

        return {"accuracy": class_hits(as_image_set(images), conditions.labels).float()}

    def evaluate(self, images, conditions: Conditions, device: str = "cpu",
                 per_condition: Optional[dict[str, Tensor]] = None) -> dict[str, float]:
        """`images`: a tensor or an ImageSet (streamed chunk by chunk from the job's chunk files); on the CPU.
        `per_condition`: what `per_condition` returned for them, if the caller has it already."""
        from inference_scaling.evaluation.fidelity import fidelity_metrics  # torch-fidelity: 2 s to import

        images = as_image_set(images)
        metrics = fidelity_metrics(images, load_digits()[0], "digits-classifier", isc=True,
                                   kid_subset_size=self.cfg.kid_subset_size)
        hits = (per_condition or self.per_condition(images, conditions))["accuracy"]
        metrics["accuracy"] = hits.mean().item()
        return metrics


class ScenesBenchmark:
    """Counting and a spatial relation, judged by the exact checker; FID/KID/PRC in the learned scene
    classifier's features against generated scenes of the same conditions (`reference_size` of them)."""

    name = "scenes"
    condition_kind = "scenes"
    min_conditions = PRC_MIN_SAMPLES
    min_conditions_why = "precision/recall compare each sample with its 3 nearest neighbours"
    primary_metric = "accuracy"

    def __init__(self, cfg):
        self.cfg = cfg

    def condition_rows(self) -> Tensor:
        if self.cfg.prompts:
            return torch.tensor([scenes.parse_prompt(p) for p in self.cfg.prompts] * self.cfg.per_class)
        return scenes.balanced_conditions(self.cfg.per_class, self.cfg.counts, self.cfg.relations)

    def conditions(self) -> Conditions:
        rows = self.condition_rows()
        return Conditions(rows, torch.arange(len(rows)), [scenes.format_prompt(r) for r in rows.tolist()])

    def reference(self, rows: Tensor) -> Tensor:
        unique = rows.unique(dim=0)
        repeats = -(-self.cfg.reference_size // len(unique))
        return scenes.generate(unique.repeat(repeats, 1)[: self.cfg.reference_size], self.cfg.reference_seed)

    def per_condition(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, Tensor]:
        """Each condition's exact check (the means are `accuracy`, `count_accuracy`, `relation_accuracy` and
        `checker_score`)."""
        checks, start = [], 0
        for chunk in as_image_set(images).batches():
            checks.append(scenes.check(chunk, conditions.labels[start:start + len(chunk)]))
            start += len(chunk)
        return {name: torch.cat([getattr(c, key) for c in checks]).float()
                for name, key in [("accuracy", "both_ok"), ("count_accuracy", "count_ok"),
                                  ("relation_accuracy", "relation_ok"), ("checker_score", "score")]}

    def evaluate(self, images, conditions: Conditions, device: str = "cpu",
                 per_condition: Optional[dict[str, Tensor]] = None) -> dict[str, float]:
        """`images`: a tensor or an ImageSet (streamed chunk by chunk from the job's chunk files); on the CPU.
        `per_condition`: what `per_condition` returned for them, if the caller has it already."""
        images = as_image_set(images)
        from inference_scaling.evaluation.fidelity import fidelity_metrics  # torch-fidelity: 2 s to import

        checks = per_condition or self.per_condition(images, conditions)
        metrics = {name: values.mean().item() for name, values in checks.items()}
        metrics.update(fidelity_metrics(images, self.reference(conditions.labels), "scene-classifier", isc=False,
                                        kid_subset_size=self.cfg.kid_subset_size))
        return metrics


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in the standard index order (synsets sorted; DiT's and SiT's labels)."""
    return (resources.files("inference_scaling") / "assets" / "imagenet_classes.txt").read_text().splitlines()


class ImageNetBenchmark:
    """Class-conditional ImageNet: `per_class` conditions for each class of `classes` (all 1,000 by default),
    interleaved so any prefix is class-balanced. With `inception` evaluated by IS and, against `reference` (an .npz:
    ADM's `VIRTUAL_imagenet256_labeled.npz` or what `reference_stats` writes), FID, precision and recall in
    InceptionV3's features (`inference_scaling.evaluation.imagenet`); otherwise by the verifier's score."""

    name = "imagenet"
    condition_kind = "imagenet"
    primary_metric = "verifier_score"

    def __init__(self, cfg):
        self.cfg = cfg

    def conditions(self) -> Conditions:
        classes = list(self.cfg.classes) or list(range(NUM_IMAGENET_CLASSES))
        bad = [c for c in classes if not 0 <= c < NUM_IMAGENET_CLASSES]
        if bad:
            raise ConditionError(f"benchmark.classes has {bad[0]}, not an ImageNet class index; use 0..999")
        names = imagenet_class_names()
        labels = torch.tensor(classes).repeat(self.cfg.per_class)
        return Conditions(labels, torch.arange(len(labels)), [names[y] for y in labels.tolist()])

    def check(self) -> None:
        """The evaluation's settings and reference file, read before any model loads."""
        from inference_scaling.evaluation.imagenet import ReferenceError, read_reference

        for key in ("is_splits", "eval_batch_size"):
            if getattr(self.cfg, key) < 1:
                raise ConditionError(f"benchmark.{key}={getattr(self.cfg, key)} must be >= 1")
        if self.cfg.reference:
            try:
                read_reference(str(Path(self.cfg.reference).expanduser()))
            except ReferenceError as err:
                raise ConditionError(str(err)) from None
        if self.cfg.inception_weights and not Path(self.cfg.inception_weights).expanduser().is_file():
            raise ConditionError(f"benchmark.inception_weights={self.cfg.inception_weights!r} is not a file; give "
                                 f"torch-fidelity's weights-inception-2015-12-05-6726825d.pth, or '' to download it")

    def evaluate(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, float]:
        from inference_scaling.evaluation.imagenet import imagenet_metrics, read_reference

        if not (self.cfg.inception or self.cfg.reference):
            return {}
        reference = read_reference(str(Path(self.cfg.reference).expanduser())) if self.cfg.reference else None
        return imagenet_metrics(images, reference, self.cfg.inception_weights, device, self.cfg.eval_batch_size,
                                self.cfg.is_splits)


class PromptsBenchmark:
    """Text prompts, from `benchmark.prompts` or a UTF-8 file of one prompt a line (`benchmark.prompts_file`),
    each `per_class` times. Evaluated for now by the verifier's score."""

    name = "prompts"
    condition_kind = "prompts"
    primary_metric = "verifier_score"

    def __init__(self, cfg):
        self.cfg = cfg

    def prompt_list(self) -> list[str]:
        if self.cfg.prompts and self.cfg.prompts_file:
            raise ConditionError("give benchmark.prompts or benchmark.prompts_file, not both")
        prompts = list(self.cfg.prompts)
        if self.cfg.prompts_file:
            path = Path(self.cfg.prompts_file).expanduser()
            try:
                prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as err:
                raise ConditionError(f"benchmark.prompts_file={str(path)!r} cannot be read as UTF-8 text "
                                     f"({type(err).__name__})") from None
        if not prompts:
            raise ConditionError("benchmark=prompts needs prompts: benchmark.prompts=['a red cube'] or "
                                 "benchmark.prompts_file=<text file, one prompt a line>")
        if any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ConditionError("benchmark.prompts holds an empty prompt")
        return prompts

    def conditions(self) -> Conditions:
        prompts = self.prompt_list() * self.cfg.per_class
        return Conditions(torch.zeros(len(prompts), dtype=torch.long), torch.arange(len(prompts)), prompts)

    def evaluate(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, float]:
        return {}


def _asset(name: str):
    return resources.files("inference_scaling") / "assets" / "benchmarks" / name


class PromptSetBenchmark:
    """A published prompt set whose prompts belong to categories: `benchmark.categories` selects some (all by
    default), `benchmark.prompts_per_category` n > 0 keeps the first n prompts of each (a quick look), each
    prompt is searched `per_class` times, and every metric is also reported per category
    (`<metric>/<category>`). A prompt's condition id is its position in the whole set (plus the set's size per
    repeat), so a category run gives its prompts the same noises as the full run. Provenance of the files:
    `inference_scaling/assets/benchmarks/PROVENANCE.md`."""

    condition_kind = "prompts"
    primary_metric = "verifier_score"
    name: str

    def __init__(self, cfg):
        self.cfg = cfg

    def table(self) -> list[tuple[str, str]]:
        """(prompt, category) of the whole set, in its published order."""
        raise NotImplementedError

    def conditions(self) -> Conditions:
        table = self.table()
        known = list(dict.fromkeys(category for _, category in table))
        unknown = [c for c in self.cfg.categories if c not in known]
        if unknown:
            raise ConditionError(f"benchmark.categories has {unknown[0]!r}, not a {self.name} category; choose from: "
                                 f"{', '.join(known)}")
        n = self.cfg.prompts_per_category
        if n < 0:
            raise ConditionError(f"benchmark.prompts_per_category={n} must be >= 0 (0: all)")
        chosen, seen = [], {}
        for k, (_, category) in enumerate(table):  # with n > 0, only the first n prompts of each category
            if (not self.cfg.categories or category in self.cfg.categories) and (not n or seen.get(category, 0) < n):
                chosen.append(k)
            seen[category] = seen.get(category, 0) + 1
        positions = [k + r * len(table) for r in range(self.cfg.per_class) for k in chosen]
        return Conditions(torch.zeros(len(positions), dtype=torch.long), torch.tensor(positions),
                          [table[k % len(table)][0] for k in positions], [table[k % len(table)][1] for k in positions])

    def evaluate(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, float]:
        return {}  # the metrics (benchmark.metrics) and the verifier's score, overall and per category


class DrawBenchBenchmark(PromptSetBenchmark):
    """DrawBench (Saharia et al. 2022): 200 prompts in 11 categories."""

    name = "drawbench"

    def table(self) -> list[tuple[str, str]]:
        with _asset("drawbench.csv").open(encoding="utf-8", newline="") as f:
            return [(row["prompt"], row["category"]) for row in csv.DictReader(f)]


T2I_COMPBENCH_CATEGORIES = ("color", "shape", "texture", "spatial", "non_spatial", "complex", "3d_spatial", "numeracy")


class T2ICompBenchBenchmark(PromptSetBenchmark):
    """T2I-CompBench(++) validation prompts: 300 per category, the six original categories then T2I-CompBench++'s
    3d_spatial and numeracy. With `evaluate`, each image is scored by its category's evaluator
    (`inference_scaling.evaluation.t2i_compbench`; the detector categories through OWLv2, a substitute for UniDet)."""

    name = "t2i_compbench"

    def table(self) -> list[tuple[str, str]]:
        return [(line, category) for category in T2I_COMPBENCH_CATEGORIES
                for line in _asset(f"t2i_compbench/{category}_val.txt").read_text(encoding="utf-8").splitlines()]

    def check(self) -> None:
        """The evaluation's settings and local model folders, read before any model loads."""
        from inference_scaling.evaluation.t2i_compbench import check_model_source, needed_models

        if not 0 <= self.cfg.detector_threshold < 1:
            raise ConditionError(f"benchmark.detector_threshold={self.cfg.detector_threshold} must be in [0, 1)")
        if not 0 < self.cfg.detector_nms_iou <= 1:
            raise ConditionError(f"benchmark.detector_nms_iou={self.cfg.detector_nms_iou} must be in (0, 1] "
                                 f"(1: no NMS)")
        if self.cfg.eval_batch_size < 1:
            raise ConditionError(f"benchmark.eval_batch_size={self.cfg.eval_batch_size} must be >= 1")
        for key in needed_models(self.cfg.categories) if self.cfg.evaluate else ():
            try:
                check_model_source(key, getattr(self.cfg, key))
            except ValueError as err:
                raise ConditionError(str(err)) from None

    def per_condition(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, Tensor]:
        """Each condition's score by its category's evaluator (`compbench`), with `evaluate`; else nothing. The
        spatial, 3d_spatial, numeracy and complex scores use OWLv2 as a SUBSTITUTE for UniDet (see
        `inference_scaling.evaluation.t2i_compbench`): not comparable with published numbers."""
        if not self.cfg.evaluate:
            return {}
        from inference_scaling.evaluation.t2i_compbench import T2ICompBenchEvaluator

        evaluator, scores, start = T2ICompBenchEvaluator(self.cfg, device), [], 0
        for chunk in as_image_set(images).batches():
            end = start + len(chunk)
            scores.append(evaluator(chunk, conditions.prompts[start:end], conditions.categories[start:end]))
            start = end
        return {"compbench": torch.cat(scores)}

    def evaluate(self, images, conditions: Conditions, device: str = "cpu",
                 per_condition: Optional[dict[str, Tensor]] = None) -> dict[str, float]:
        """The mean score (`compbench`), and apart the means of the categories scored by the benchmark's own models
        (`compbench_official_models`) and through the detector substitute (`compbench_owlv2_substitute`); the
        runner adds `compbench/<category>`."""
        from inference_scaling.evaluation.t2i_compbench import SUBSTITUTED

        if not self.cfg.evaluate:
            return {}
        scores = (per_condition or self.per_condition(images, conditions, device))["compbench"]
        substituted = torch.tensor([c in SUBSTITUTED for c in conditions.categories])
        metrics = {"compbench": scores.mean().item()}
        for name, mine in [("compbench_official_models", ~substituted), ("compbench_owlv2_substitute", substituted)]:
            if mine.any():
                metrics[name] = scores[mine].mean().item()
        return metrics


class GenEvalBenchmark(PromptSetBenchmark):
    """GenEval's 553 prompts; the category is the task (single_object, two_object, counting, colors, position,
    color_attr); each prompt's metadata (the objects, counts, colours and positions it asks for) is `metadata()`.
    With `evaluate`, each image is judged by GenEval's rules (`inference_scaling.evaluation.geneval`)."""

    name = "geneval"

    def metadata(self) -> list[dict]:
        lines = _asset("geneval/evaluation_metadata.jsonl").read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def table(self) -> list[tuple[str, str]]:
        return [(entry["prompt"], entry["tag"]) for entry in self.metadata()]

    def check(self) -> None:
        """The evaluation's settings, read before any model loads."""
        for key in ("threshold", "counting_threshold", "max_overlap"):
            if not 0 <= getattr(self.cfg, key) <= 1:
                raise ConditionError(f"benchmark.{key}={getattr(self.cfg, key)} must be in [0, 1]")
        for key in ("max_objects", "eval_batch_size"):
            if getattr(self.cfg, key) < 1:
                raise ConditionError(f"benchmark.{key}={getattr(self.cfg, key)} must be >= 1")
        if not self.cfg.position_margin >= 0:
            raise ConditionError(f"benchmark.position_margin={self.cfg.position_margin} must be >= 0 (GenEval: 0.1)")
        for key in ("detector", "clip"):
            if self.cfg.evaluate and not getattr(self.cfg, key).strip():
                raise ConditionError(f"benchmark.{key} is empty; give a hub id or a local folder")

    def entries(self, conditions: Conditions) -> list[dict]:
        """Each condition's metadata row (condition id k is row k mod 553)."""
        table = self.metadata()
        return [table[k % len(table)] for k in conditions.ids.tolist()]

    def per_condition(self, images, conditions: Conditions, device: str = "cpu") -> dict[str, Tensor]:
        """Each condition's GenEval verdict, 1 correct or 0 (`geneval`), with `evaluate`; else nothing."""
        if not self.cfg.evaluate:
            return {}
        from inference_scaling.evaluation.geneval import GenEvalEvaluator

        evaluator = GenEvalEvaluator.from_config(self.cfg, device)
        entries, verdicts = self.entries(conditions), []
        for chunk in as_image_set(images).batches():
            verdicts += evaluator(chunk, entries[len(verdicts):len(verdicts) + len(chunk)])
        return {"geneval": torch.tensor([v.correct for v in verdicts], dtype=torch.float32)}

    def evaluate(self, images, conditions: Conditions, device: str = "cpu",
                 per_condition: Optional[dict[str, Tensor]] = None) -> dict[str, float]:
        """GenEval's overall score (`geneval_overall`, the mean of the task accuracies), the fraction of correct
        images and of prompts with a correct image, with `evaluate`; the runner adds `geneval/<task>`."""
        if not self.cfg.evaluate:
            return {}
        from inference_scaling.evaluation.geneval import geneval_scores

        correct = (per_condition or self.per_condition(images, conditions, device))["geneval"]
        rows = len(self.metadata())
        return geneval_scores(correct, conditions.categories, [k % rows for k in conditions.ids.tolist()])


NUM_IMAGENET_CLASSES = 1000
BENCHMARKS = {"digits": DigitsBenchmark, "scenes": ScenesBenchmark, "imagenet": ImageNetBenchmark,
              "prompts": PromptsBenchmark, "drawbench": DrawBenchBenchmark, "t2i_compbench": T2ICompBenchBenchmark,
              "geneval": GenEvalBenchmark}
