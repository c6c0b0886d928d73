"""LLM grader: a multimodal LLM rates each candidate on five aspects (Ma et al. 2025, §4.2 and Appendix).

The paper's "LLM Grader" prompts a multimodal model to assess a generated image on accuracy to prompt,
originality, visual quality, internal consistency and emotional resonance. Here the model sits behind any
OpenAI-compatible chat-completions API (a vLLM server, OpenAI, Gemini's /v1beta/openai endpoint).

Scoring: the model answers one JSON object holding the five aspects, each a number in [0, 10]; the
candidate's score is the mean of the five, so it lies in [0, 10] and higher is better. Parsing is strict:
any other reply (not JSON, missing or extra keys, non-numeric, non-finite or out-of-range values) is a
parse failure. Parse failures are retried like transient HTTP errors (HTTP 429, 5xx, timeouts, connection
errors), within `max_retries`, since a sampled reply may be well formed on the next try; other 4xx are not
retried. A candidate still ungraded after its attempts scores `FAILED_SCORE` (-inf), so an argmax never
picks it unless every candidate failed; the call itself goes on and `last_records` says what happened.

Cache: a grade is keyed by sha256 of (sha256 of the image's PNG bytes, prompt, model, PROMPT_VERSION) and
held in memory for the grader's lifetime and, when `cache_dir` is set, as one JSON file per key (written
atomically), so a rerun costs zero API calls. Entries hold the score and aspect values only; failures are
not cached.

API key: read from the environment variable named `api_key_env` when requests are sent, passed to the
worker threads as an argument and never kept on the object, written to a file or shown in its repr. A
localhost server (vLLM) may run without one; any other host needs it, else a one-line ValueError.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import math
import os
import random
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from PIL import Image
from torch import Tensor

from inference_scaling.config import VerifierConfig
from inference_scaling.verifiers.base import Conditions, VerifierCost

ASPECTS = ("accuracy_to_prompt", "originality", "visual_quality", "internal_consistency", "emotional_resonance")
SCORE_MIN, SCORE_MAX = 0.0, 10.0
FAILED_SCORE = float("-inf")
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")

GRADING_PROMPT = """You are a strict judge of text-to-image generations. You are given the prompt an image was \
generated from, and the image. Rate the image on five aspects, each with a number from 0 (worst) to 10 (best):
- accuracy_to_prompt: how faithfully the image shows everything the prompt asks for.
- originality: how creative and original the rendering of the prompt is.
- visual_quality: clarity, detail, realism or stylistic quality, and absence of artifacts.
- internal_consistency: whether the parts of the image fit together (shapes, lighting, perspective, anatomy).
- emotional_resonance: how well the image conveys the mood or theme the prompt implies.
Answer with one JSON object with exactly these five keys and numeric values, and nothing else, for example:
{"accuracy_to_prompt": 7, "originality": 5, "visual_quality": 6, "internal_consistency": 8, \
"emotional_resonance": 4}"""

# Changes whenever the grading prompt does, so an edited prompt never reads grades cached under the old one.
PROMPT_VERSION = hashlib.sha256(GRADING_PROMPT.encode()).hexdigest()[:16]


@dataclass
class LLMGraderConfig(VerifierConfig):
    name: str = "llm_grader"
    weights: str = ""  # unused: the grader is a remote model; kept for the VerifierConfig contract
    base_url: str = "http://127.0.0.1:8000/v1"  # OpenAI-compatible API root; POSTs to {base_url}/chat/completions
    model: str = "Qwen/Qwen2.5-VL-7B-Instruct"  # the model name the server expects
    api_key_env: str = "OPENAI_API_KEY"  # NAME of the environment variable holding the key, never the key
    max_concurrency: int = 4  # requests in flight at once
    timeout_s: float = 60.0  # per request
    max_retries: int = 4  # extra attempts after the first, with backoff_s * 2**k (jittered) between them
    backoff_s: float = 1.0
    json_mode: bool = True  # send response_format {"type": "json_object"}; turn off if the server rejects it
    temperature: float = 0.0
    cache_dir: Optional[str] = "outputs/llm_grader_cache"  # one JSON file per grade; null: memory only
    min_side: int = 224  # nearest-neighbour upscale so the shorter side is at least this (0: as is)


class GradingError(Exception):
    """One attempt that yielded no grade; `retry` says whether another attempt may help."""

    def __init__(self, reason: str, retry: bool):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def image_png(image: Tensor, min_side: int = 0) -> bytes:
    """PNG bytes of one (C, H, W) image in [-1, 1], C in {1, 3}, upscaled by an integer nearest factor."""
    assert image.ndim == 3 and image.shape[0] in (1, 3), f"expected a (1|3, H, W) image, got {tuple(image.shape)}"
    pixels = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    factor = max(1, math.ceil(min_side / min(pixels.shape[1:])))
    pixels = pixels.repeat_interleave(factor, 1).repeat_interleave(factor, 2).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def cache_key(png: bytes, prompt: str, model: str) -> str:
    parts = [hashlib.sha256(png).hexdigest(), prompt, model, PROMPT_VERSION]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def parse_grade(content: object) -> dict[str, float]:
    """The five aspect scores of a reply's message content; a GradingError unless exactly well formed."""
    if not isinstance(content, str):
        raise GradingError("reply has no text content", retry=True)
    try:
        return check_aspects(json.loads(content))
    except json.JSONDecodeError:
        raise GradingError("reply is not JSON", retry=True) from None


def check_aspects(grade: object) -> dict[str, float]:
    """`grade` as {aspect: float} if it is a dict of exactly the five aspects, each a number in range."""
    if not isinstance(grade, dict) or set(grade) != set(ASPECTS):
        raise GradingError(f"reply is not a JSON object with exactly the keys {', '.join(ASPECTS)}", retry=True)
    for aspect, value in grade.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GradingError(f"{aspect} is not a number", retry=True)
        if not SCORE_MIN <= value <= SCORE_MAX:
            raise GradingError(f"{aspect}={value} is outside [{SCORE_MIN:g}, {SCORE_MAX:g}]", retry=True)
    return {aspect: float(grade[aspect]) for aspect in ASPECTS}


def overall(aspects: dict[str, float]) -> float:
    """The candidate's score: the mean of the five aspect scores."""
    return sum(aspects[a] for a in ASPECTS) / len(ASPECTS)


def message_content(payload: bytes) -> object:
    """choices[0].message.content of a chat-completions response body."""
    try:
        return json.loads(payload)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GradingError("response is not a chat completion", retry=True) from None


class ScoreCache:
    """Grades by cache key, in memory and, with a directory, one JSON file per key."""

    def __init__(self, directory: Optional[str]):
        self.directory = Path(directory) if directory else None
        self.memory: dict[str, dict[str, float]] = {}

    def get(self, key: str) -> Optional[dict[str, float]]:
        if key not in self.memory and self.directory is not None:
            file = self.directory / f"{key}.json"
            try:
                self.memory[key] = check_aspects(json.loads(file.read_text())["aspects"])
            except (OSError, ValueError, KeyError, TypeError, GradingError):
                return None  # absent or unreadable: a miss, graded again and rewritten
        return self.memory.get(key)

    def put(self, key: str, aspects: dict[str, float]) -> None:
        self.memory[key] = aspects
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        entry = json.dumps({"score": overall(aspects), "aspects": aspects})
        # Written aside and renamed, so a reader never sees half an entry.
        with tempfile.NamedTemporaryFile("w", dir=self.directory, suffix=".tmp", delete=False) as tmp:
            tmp.write(entry)
        os.replace(tmp.name, self.directory / f"{key}.json")


class LLMGrader:
    """Mean of five aspect scores in [0, 10] given by a multimodal LLM (Ma et al. 2025, §4.2 and Appendix).

    After each call `last_records[i]` describes candidate i: status ("ok", "cached" or "failed: <reason>"),
    score, aspects (None when failed) and requests (API requests sent for it in that call). `cost.calls`
    counts API requests sent (retries included), `cost.images` every image scored (cached or failed too).
    """

    name = "llm_grader"
    takes_prompts = True  # grades images against the benchmark's prompts (any benchmark)
    remote = True  # its calls wait on an API: searches score a batch while solving the next (ScoringQueue)

    @classmethod
    def from_config(cls, cfg: LLMGraderConfig, device: str = "cpu") -> "LLMGrader":
        return cls(cfg)

    @classmethod
    def check(cls, cfg: LLMGraderConfig) -> None:
        """What validate() checks before any job starts: ranges, and the API key a remote server needs."""
        check_config(cfg)

    def __init__(self, config: LLMGraderConfig):
        check_config(config)
        self.config = config
        self.cost = VerifierCost()
        self.cache = ScoreCache(config.cache_dir)
        self.last_records: list[dict] = []
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._rng = random.Random()  # backoff jitter only
        self.read_api_key()  # fail on a missing key before any model loads

    def __repr__(self) -> str:
        c = self.config
        return f"LLMGrader(model={c.model!r}, base_url={c.base_url!r}, api_key_env={c.api_key_env!r})"

    def __call__(self, images: Tensor, cond: Conditions) -> Tensor:
        """Scores (B,) of images (B, C, H, W) in [-1, 1] for their prompts (or class indices), in input order."""
        start = time.perf_counter()
        prompts = self.prompts(cond)
        assert images.ndim == 4 and len(images) == len(prompts), \
            f"expected (B, C, H, W) images with one prompt each, got {tuple(images.shape)} and {len(prompts)}"
        pngs = [image_png(image, self.config.min_side) for image in images]
        keys = [cache_key(png, prompt, self.config.model) for png, prompt in zip(pngs, prompts)]
        cached = {key for key in keys if self.cache.get(key) is not None}
        pending = {key: (png, prompt) for key, png, prompt in zip(keys, pngs, prompts) if key not in cached}
        fresh = self.grade_all(pending)
        self.last_records = [self.record(key, key in cached, fresh) for key in keys]
        # A key repeated in one batch was requested once; its requests count once.
        self.cost.calls += sum(requests for _, requests in fresh.values())
        self.cost.images += len(keys)
        self.cost.failed += sum(r["status"].startswith("failed") for r in self.last_records)
        self.cost.seconds += time.perf_counter() - start
        return torch.tensor([r["score"] for r in self.last_records], dtype=torch.float32)

    def prompts(self, cond: Conditions) -> list[str]:
        """The prompt strings (the search passes each condition's prompt, as `takes_prompts` asks)."""
        if isinstance(cond, (str, Tensor)) or not all(isinstance(p, str) for p in cond):
            raise TypeError("prompts must be a sequence of strings, one per image")
        return list(cond)

    def record(self, key: str, cached: bool, fresh: dict[str, tuple[str, int]]) -> dict:
        status, requests = ("cached", 0) if cached else fresh[key]
        aspects = self.cache.get(key) if status in ("ok", "cached") else None
        score = overall(aspects) if aspects is not None else FAILED_SCORE
        return {"status": status, "score": score, "aspects": aspects, "requests": requests}

    def grade_all(self, pending: dict[str, tuple[bytes, str]]) -> dict[str, tuple[str, int]]:
        """(status, requests sent) per key; results are matched to keys, never to completion order."""
        if not pending:
            return {}
        api_key = self.read_api_key()
        workers = min(self.config.max_concurrency, len(pending))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            outcomes = pool.map(lambda item: self.grade(item[0], *item[1], api_key), pending.items())
            return dict(zip(pending, outcomes))

    def grade(self, key: str, png: bytes, prompt: str, api_key: Optional[str]) -> tuple[str, int]:
        """Grade one candidate with retries; caches a success. Returns (status, requests sent)."""
        body = self.request_body(png, prompt)
        attempt = 0
        while True:
            attempt += 1
            try:
                aspects = parse_grade(message_content(self.post(body, api_key)))
            except GradingError as err:
                if not err.retry or attempt > self.config.max_retries:
                    return f"failed: {err.reason}", attempt
                time.sleep(self.config.backoff_s * 2 ** (attempt - 1) * self._rng.uniform(0.5, 1.0))
                continue
            self.cache.put(key, aspects)
            return "ok", attempt

    def request_body(self, png: bytes, prompt: str) -> bytes:
        """An OpenAI chat-completions request: the grading instructions, the prompt and the image as a data URL."""
        image_url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        body = {
            "model": self.config.model,
            "temperature": self.config.temperature,
            "messages": [
                {"role": "system", "content": GRADING_PROMPT},
                {"role": "user", "content": [
                    {"type": "text", "text": f"Prompt: {prompt}"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ]},
            ],
        }
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        return json.dumps(body).encode()

    def post(self, body: bytes, api_key: Optional[str]) -> bytes:
        """One request; transport failures become GradingErrors (retry on 429, 5xx, timeouts, connections)."""
        headers = {"Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        request = urllib.request.Request(self._url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as err:
            err.close()
            raise GradingError(f"HTTP {err.code}", retry=err.code == 429 or err.code >= 500) from None
        except urllib.error.URLError as err:
            raise GradingError(f"connection error: {err.reason}", retry=True) from None
        except TimeoutError:
            raise GradingError("timed out", retry=True) from None
        except (OSError, http.client.HTTPException) as err:
            raise GradingError(f"connection error: {type(err).__name__}", retry=True) from None

    def read_api_key(self) -> Optional[str]:
        """The key from the environment, read when needed; None is allowed only for a localhost server."""
        key = os.environ.get(self.config.api_key_env) or None
        host = urllib.parse.urlsplit(self.config.base_url).hostname
        if key is None and host not in LOCAL_HOSTS:
            raise ValueError(f"environment variable {self.config.api_key_env} is not set; it must hold the API key "
                             f"for {self.config.base_url} (only a localhost server may run without one)")
        return key


def check_config(config: LLMGraderConfig) -> None:
    """One-line ValueErrors for values out of range, before any request."""
    if urllib.parse.urlsplit(config.base_url).scheme not in ("http", "https"):
        raise ValueError(f"verifier.base_url={config.base_url!r} must be an http:// or https:// URL")
    host = urllib.parse.urlsplit(config.base_url).hostname
    if host not in LOCAL_HOSTS and not os.environ.get(config.api_key_env):  # presence only: the key is read per use
        raise ValueError(f"verifier.base_url={config.base_url} needs an API key, but the environment variable "
                         f"{config.api_key_env} (verifier.api_key_env) is not set; only a localhost server may run "
                         f"without one")
    for field, value, low in [("max_concurrency", config.max_concurrency, 1), ("timeout_s", config.timeout_s, 1e-3),
                              ("max_retries", config.max_retries, 0), ("backoff_s", config.backoff_s, 0.0),
                              ("min_side", config.min_side, 0), ("temperature", config.temperature, 0.0)]:
        if value < low:
            raise ValueError(f"verifier.{field}={value} must be >= {low}")
