"""The LLM grader (Ma et al. 2025, §4.2) against a scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from inference_scaling.verifiers.llm_grader import (
    ASPECTS, FAILED_SCORE, LLMGrader, LLMGraderConfig, image_png,
)

KEY_ENV = "LLM_GRADER_TEST_KEY"
Reply = tuple[int, bytes, float]  # HTTP status, body, seconds to wait before answering


def completion(content: object) -> bytes:
    """A chat-completions response whose message content is `content` (a dict is sent as JSON text)."""
    text = json.dumps(content) if isinstance(content, dict) else content
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}).encode()


def grade(value: float) -> dict:
    return {aspect: value for aspect in ASPECTS}


def ok(value: float, delay: float = 0.0) -> Reply:
    return 200, completion(grade(value)), delay


class FakeServer:
    """Imitates POST /v1/chat/completions; `reply(prompt, n)` scripts the n-th (0-based) answer to a prompt."""

    def __init__(self, reply: Callable[[str, int], Reply]):
        self.reply = reply
        self.requests: list[dict] = []  # prompt, headers, body of each request, in arrival order
        self.finished: list[str] = []  # prompts in the order their answers were sent
        self.lock = threading.Lock()
        self.active = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def count(self, prompt: str) -> int:
        return sum(r["prompt"] == prompt for r in self.requests)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
        deadline = time.monotonic() + 5  # let handlers still sleeping (timeout tests) finish
        while self.active and time.monotonic() < deadline:
            time.sleep(0.01)


def make_handler(fake: FakeServer) -> type:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            prompt = body["messages"][1]["content"][0]["text"].removeprefix("Prompt: ")
            with fake.lock:
                n = fake.count(prompt)
                fake.requests.append({"prompt": prompt, "headers": dict(self.headers), "body": body, "path": self.path})
                fake.active += 1
            status, payload, delay = fake.reply(prompt, n) if self.path == "/v1/chat/completions" else (404, b"", 0)
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout tests)
            with fake.lock:
                fake.finished.append(prompt)
                fake.active -= 1

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", KEY_ENV):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def serve():
    servers: list[FakeServer] = []

    def start(reply: Callable[[str, int], Reply]) -> FakeServer:
        servers.append(FakeServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def config(url: str, **overrides) -> LLMGraderConfig:
    base = LLMGraderConfig(base_url=url, model="test-model", api_key_env=KEY_ENV, max_concurrency=4, timeout_s=2.0,
                           max_retries=2, backoff_s=0.001, cache_dir=None, min_side=0)
    return replace(base, **overrides)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_score_is_mean_of_aspects_and_request_is_openai_chat_format(serve, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    aspects = {"accuracy_to_prompt": 10, "originality": 0, "visual_quality": 5, "internal_consistency": 7,
               "emotional_resonance": 3}
    server = serve(lambda p, n: (200, completion(aspects), 0.0) if p == "p0" else ok(8.0))
    grader = LLMGrader(config(server.url))
    x = images(2)
    scores = grader(x, ["p0", "p1"])
    assert scores.dtype == torch.float32 and scores.tolist() == [5.0, 8.0]
    assert [r["status"] for r in grader.last_records] == ["ok", "ok"]
    assert grader.last_records[0]["aspects"] == {k: float(v) for k, v in aspects.items()}
    assert (grader.cost.calls, grader.cost.images) == (2, 2) and grader.cost.seconds > 0

    request = next(r for r in server.requests if r["prompt"] == "p0")
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-test"
    body = request["body"]
    assert body["model"] == "test-model" and body["response_format"] == {"type": "json_object"}
    part = body["messages"][1]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")
    png = base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    sent = np.asarray(Image.open(io.BytesIO(png)))
    expected = ((x[0] + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(sent, expected)


def test_json_mode_off_omits_response_format(serve):
    server = serve(lambda p, n: ok(5.0))
    LLMGrader(config(server.url, json_mode=False))(images(1), ["p"])
    assert "response_format" not in server.requests[0]["body"]


def test_image_png_upscales_by_nearest_neighbour_and_keeps_grayscale():
    x = torch.tensor([[[-1.0, 1.0], [0.0, -1.0]]])  # (1, 2, 2)
    sent = np.asarray(Image.open(io.BytesIO(image_png(x, min_side=5))))
    assert sent.shape == (6, 6)  # factor ceil(5 / 2) = 3
    np.testing.assert_array_equal(sent[::3, ::3], [[0, 255], [128, 0]])
    np.testing.assert_array_equal(sent[:3, :3], 0)


GOOD = grade(5.0)
MALFORMED = {
    "not json": (200, completion("The image is great: 9/10"), 0.0),
    "json list": (200, completion("[1, 2, 3, 4, 5]"), 0.0),
    "missing key": (200, completion({k: 5 for k in ASPECTS[:-1]}), 0.0),
    "extra key": (200, completion({**GOOD, "overall": 5}), 0.0),
    "above range": (200, completion({**GOOD, "originality": 11}), 0.0),
    "below range": (200, completion({**GOOD, "visual_quality": -0.5}), 0.0),
    "string value": (200, completion({**GOOD, "originality": "7"}), 0.0),
    "bool value": (200, completion({**GOOD, "originality": True}), 0.0),
    "nan value": (200, completion(json.dumps(GOOD).replace("5.0", "NaN", 1)), 0.0),
    "null content": (200, completion(None), 0.0),
    "not a completion": (200, b'{"error": "nothing"}', 0.0),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_reply_is_retried_then_recorded_failed(serve, case):
    server = serve(lambda p, n: MALFORMED[case] if p == "bad" else ok(6.0))
    grader = LLMGrader(config(server.url, max_retries=2))
    scores = grader(images(2), ["bad", "good"])
    assert scores[0].item() == FAILED_SCORE and scores[1].item() == 6.0
    bad = grader.last_records[0]
    assert bad["status"].startswith("failed: ") and bad["aspects"] is None
    assert bad["requests"] == server.count("bad") == 3


def test_parse_failure_then_well_formed_reply_is_ok(serve):
    server = serve(lambda p, n: (200, completion("oops"), 0.0) if n == 0 else ok(4.0))
    grader = LLMGrader(config(server.url))
    assert grader(images(1), ["p"]).tolist() == [4.0]
    assert grader.last_records[0]["status"] == "ok" and grader.last_records[0]["requests"] == 2


def test_timeout_is_retried(serve):
    def reply(prompt: str, n: int) -> Reply:
        return ok(3.0, delay=0.6 if prompt == "slow" or n == 0 else 0.0)

    server = serve(reply)
    grader = LLMGrader(config(server.url, timeout_s=0.3, max_retries=1))
    scores = grader(images(2), ["slow", "slow-once"])
    assert scores.tolist() == [FAILED_SCORE, 3.0]
    assert grader.last_records[0]["status"] == "failed: timed out"
    assert [r["requests"] for r in grader.last_records] == [2, 2]


def test_429_is_retried_with_backoff_and_every_request_counted(serve):
    server = serve(lambda p, n: (429, b"{}", 0.0) if n < 2 else ok(7.0))
    grader = LLMGrader(config(server.url, max_retries=3, backoff_s=0.05))
    start = time.perf_counter()
    assert grader(images(1), ["p"]).tolist() == [7.0]
    assert time.perf_counter() - start >= 0.05 * (0.5 + 1.0)  # jittered backoff: at least half of 0.05 + 0.1
    assert grader.last_records[0] == {"status": "ok", "score": 7.0, "aspects": grade(7.0), "requests": 3}
    assert grader.cost.calls == len(server.requests) == 3


def test_persistent_500_fails_one_candidate_and_the_others_are_scored(serve):
    server = serve(lambda p, n: (500, b"boom", 0.0) if p == "bad" else ok(float(p[-1])))
    grader = LLMGrader(config(server.url, max_retries=2))
    scores = grader(images(3), ["p1", "bad", "p2"])
    assert scores.tolist() == [1.0, FAILED_SCORE, 2.0] and scores.argmax().item() == 2
    assert grader.last_records[1]["status"] == "failed: HTTP 500"
    assert server.count("bad") == 3 and grader.cost.calls == 5


@pytest.mark.parametrize("status", [400, 401, 404])
def test_other_4xx_is_not_retried(serve, status):
    server = serve(lambda p, n: (status, b"{}", 0.0))
    grader = LLMGrader(config(server.url, max_retries=3))
    assert grader(images(1), ["p"]).tolist() == [FAILED_SCORE]
    assert grader.last_records[0]["status"] == f"failed: HTTP {status}" and len(server.requests) == 1


def test_refused_connection_is_retried_then_failed():
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    grader = LLMGrader(config(f"http://127.0.0.1:{port}/v1", max_retries=2))
    assert grader(images(1), ["p"]).tolist() == [FAILED_SCORE]
    record = grader.last_records[0]
    assert record["status"].startswith("failed: connection error") and record["requests"] == 3


@pytest.mark.parametrize("concurrency", [3, 6])
def test_scores_come_back_in_input_order_when_answers_do_not(serve, concurrency):
    # Candidate i scores i; later candidates are answered sooner, so answers arrive out of input order.
    server = serve(lambda p, n: ok(float(p[1:]), delay=0.04 * (6 - int(p[1:]))))
    grader = LLMGrader(config(server.url, max_concurrency=concurrency))
    prompts = [f"p{i}" for i in range(6)]
    scores = grader(images(6), prompts)
    assert server.finished != prompts  # the test exercises out-of-order completion
    assert scores.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert [r["score"] for r in grader.last_records] == scores.tolist()


def test_disk_cache_makes_a_rerun_free_and_misses_on_new_prompt_or_model(serve, tmp_path):
    server = serve(lambda p, n: ok(float(len(p))))
    cfg = config(server.url, cache_dir=str(tmp_path / "cache"))
    x = images(2)
    first = LLMGrader(cfg)(x, ["ab", "abc"])
    assert len(server.requests) == 2

    rerun = LLMGrader(cfg)  # a new process would start with an empty memory cache
    assert torch.equal(rerun(x, ["ab", "abc"]), first) and first.tolist() == [2.0, 3.0]
    assert len(server.requests) == 2 and rerun.cost.calls == 0
    assert [r["status"] for r in rerun.last_records] == ["cached", "cached"]

    files = sorted((tmp_path / "cache").iterdir())
    assert len(files) == 2 and all(f.suffix == ".json" for f in files)
    assert all(set(json.loads(f.read_text())) == {"score", "aspects"} for f in files)

    rerun(x[:1], ["abcd"])  # same image, different prompt
    LLMGrader(replace(cfg, model="other-model"))(x[:1], ["ab"])
    assert len(server.requests) == 4 and server.requests[-1]["body"]["model"] == "other-model"


def test_memory_cache_and_duplicates_in_a_batch_are_requested_once(serve):
    server = serve(lambda p, n: ok(2.0))
    grader = LLMGrader(config(server.url))
    x = images(1).repeat(3, 1, 1, 1)
    assert grader(x, ["p", "p", "p"]).tolist() == [2.0] * 3
    assert grader(x[:1], ["p"]).tolist() == [2.0]
    assert len(server.requests) == grader.cost.calls == 1 and grader.cost.images == 4


def test_key_is_sent_but_never_written_logged_or_shown(serve, monkeypatch, tmp_path):
    key = "sk-secret-5f1d2c9a7b"
    monkeypatch.setenv(KEY_ENV, key)
    server = serve(lambda p, n: (401, b"{}", 0.0) if p == "denied" else ok(5.0))
    grader = LLMGrader(config(server.url, cache_dir=str(tmp_path / "cache")))
    grader(images(2), ["p", "denied"])
    assert {r["headers"]["Authorization"] for r in server.requests} == {f"Bearer {key}"}
    written = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert written and not any(key.encode() in f.read_bytes() for f in written)
    for shown in (repr(grader), str(grader), str(vars(grader)), str(grader.last_records), repr(grader.config)):
        assert key not in shown


def test_key_is_read_from_the_environment_at_call_time(serve, monkeypatch):
    server = serve(lambda p, n: ok(5.0))
    grader = LLMGrader(config(server.url))  # localhost: no key needed
    grader(images(1), ["p"])
    assert "Authorization" not in server.requests[0]["headers"]
    monkeypatch.setenv(KEY_ENV, "sk-later")
    grader(images(1, seed=1), ["p"])
    assert server.requests[1]["headers"]["Authorization"] == "Bearer sk-later"


def test_missing_key_for_a_remote_server_is_a_one_line_error():
    with pytest.raises(ValueError, match=KEY_ENV) as err:
        LLMGrader(config("https://api.example.invalid/v1"))
    assert "\n" not in str(err.value)


def test_class_indices_are_not_prompts():
    with pytest.raises(TypeError, match="one per image"):
        LLMGrader(config("http://127.0.0.1:1/v1"))(images(2), torch.tensor([3, 7]))


def test_one_string_is_not_a_list_of_prompts():
    with pytest.raises(TypeError, match="one per image"):
        LLMGrader(config("http://127.0.0.1:1/v1"))(images(1), "p")


@pytest.mark.parametrize("override", [{"max_concurrency": 0}, {"timeout_s": 0.0}, {"max_retries": -1},
                                      {"backoff_s": -1.0}, {"min_side": -1},
                                      {"base_url": "127.0.0.1:8000/v1"}])
def test_out_of_range_config_is_rejected(override):
    with pytest.raises(ValueError, match=next(iter(override))):
        LLMGrader(config("http://127.0.0.1:1/v1", **override))
