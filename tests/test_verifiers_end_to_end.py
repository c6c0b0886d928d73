"""Verifiers end to end: random search on the embedded digits model with tiny local networks or a local
OpenAI-compatible server standing in for real checkpoints and APIs."""

import csv
import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import random_inception_weights, tiny_clip

from inference_scaling.runner import run
from inference_scaling.verifiers.aesthetic import ScoreMLP

DIGITS = ("logger=none", "progress=false", "benchmark.per_class=2", "budget.nfe=9")


def scores_vary(result) -> bool:
    return len({round(r["search_score"], 6) for r in result["records"]}) > 1


def test_clip_score_end_to_end(config, tiny_clip_folder):
    result = run(config(*DIGITS, "verifier=clip_score", f"verifier.clip={tiny_clip_folder}"))
    assert result["metrics"]["n_candidates"] == 3 and scores_vary(result)
    assert all(r["search_score"] >= 0 for r in result["records"])  # 2.5·max(cos, 0)


def test_aesthetic_end_to_end(config, tiny_clip_folder, tmp_path):
    torch.manual_seed(1)
    head = tmp_path / "head.safetensors"
    save_file(ScoreMLP(16).state_dict(), str(head))
    result = run(config(*DIGITS, "verifier=aesthetic", f"verifier.clip={tiny_clip_folder}",
                        f"verifier.weights={head}", "verifier.input_size=16"))
    assert scores_vary(result)


def test_clip_zeroshot_end_to_end(config, tiny_clip_folder):
    result = run(config(*DIGITS, "verifier=clip_zeroshot", f"verifier.clip={tiny_clip_folder}",
                        "verifier.class_names=[zero,one,two,three,four,five,six,seven,eight,nine]"))
    assert scores_vary(result)


def test_ensemble_end_to_end_ranks_within_each_condition(config, tiny_clip_folder, tmp_path):
    torch.manual_seed(2)
    head = tmp_path / "head.safetensors"
    save_file(ScoreMLP(16).state_dict(), str(head))
    result = run(config(*DIGITS, "verifier=ensemble", "~verifier.members.image_reward",
                        f"verifier.clip_score.clip={tiny_clip_folder}", f"verifier.aesthetic.clip={tiny_clip_folder}",
                        f"verifier.aesthetic.weights={head}", "verifier.aesthetic.input_size=16"))
    # Mean rank among a condition's 3 candidates: the winner's is between 1 and 2 (rank 0 = worst).
    assert all(1.0 <= r["search_score"] <= 2.0 for r in result["records"]), result["records"]
    assert all(r["final_score"] == r["search_score"] for r in result["records"])  # ranks need the candidates


def test_inception_is_end_to_end(config, tmp_path):
    weights = random_inception_weights(tmp_path / "inception.pth")
    result = run(config("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=6",
                        "verifier=inception_is", f"verifier.weights={weights}", "verifier.batch_size=32"))
    assert result["metrics"]["n_candidates"] == 2
    assert all(0.0 <= r["search_score"] <= 1.0 for r in result["records"]) and scores_vary(result)


def test_dino_linear_end_to_end(config, tmp_path):
    """Full-size ViT-S/14 with random weights and a random 10-class head, loaded from local files."""
    import timm

    torch.manual_seed(5)
    backbone = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(tmp_path / "backbone.safetensors"))
    save_file({"weight": torch.randn(10, 768) * 0.05, "bias": torch.zeros(10)}, str(tmp_path / "head.safetensors"))
    result = run(config("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=6", "verifier=dino_linear",
                        f"verifier.weights={tmp_path / 'head.safetensors'}",
                        f"verifier.backbone_weights={tmp_path / 'backbone.safetensors'}"))
    assert result["metrics"]["n_candidates"] == 2 and scores_vary(result)


def test_ssl_clip_end_to_end(config, tmp_path):
    # CLIP's initialisation (std 0.02) leaves a 1-layer class token almost blind to the image: cosines of an early
    # guess and the final sample would all round to 1. Larger random weights make the embedding see the pixels.
    model, tokenizer = tiny_clip(layers=1)
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(8)
        for p in model.vision_model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    # 4 Heun steps (7 NFEs): the x0-prediction is read at σ = 0.5, before the last step.
    result = run(config(*DIGITS[:-1], "budget.nfe=21", "model.search_steps=4", "verifier=ssl_clip",
                        f"verifier.clip={tmp_path}"))
    assert result["metrics"]["verifier_x0_extra_nfe"] == 0 and result["metrics"]["nfe_search_per_condition"] == 21
    assert all(abs(r["search_score"]) <= 1.0 + 1e-5 for r in result["records"]) and scores_vary(result)


def test_ssl_dino_end_to_end(config, tmp_path):
    """Full-size ViT-S/14 with random weights from a local file, read at 28 px to keep CPU time low."""
    import timm

    torch.manual_seed(7)
    backbone = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
    with torch.no_grad():  # timm zero-initialises biases and LayerScale gains near 0: make every tensor matter
        for p in backbone.parameters():
            p.add_(0.1 * torch.randn_like(p))
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(tmp_path / "backbone.safetensors"))
    result = run(config("logger=none", "progress=false", "benchmark.per_class=1", "budget.nfe=14", "model.search_steps=4",
                        "verifier=ssl_dino",
                        f"verifier.weights={tmp_path / 'backbone.safetensors'}", "verifier.image_size=28"))
    assert result["metrics"]["n_candidates"] == 2 and scores_vary(result)


class _Grader(BaseHTTPRequestHandler):
    """A chat-completions endpoint grading each image by a hash of its bytes, and recording the key it saw."""

    seen_keys: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Grader.seen_keys.append(self.headers.get("Authorization"))
        image = next(p["image_url"]["url"] for p in body["messages"][-1]["content"] if p["type"] == "image_url")
        value = int(hashlib.sha256(image.encode()).hexdigest(), 16) % 11
        aspects = ["accuracy_to_prompt", "originality", "visual_quality", "internal_consistency", "emotional_resonance"]
        content = json.dumps({a: value for a in aspects}) if value else "I would rather not say."  # some fail
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_llm_grader_end_to_end_through_the_cli_and_the_key_is_never_written(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Grader)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    secret = "sk-test-0123456789-never-write-me"
    try:
        env = {**os.environ, "OPENAI_API_KEY": secret, "WANDB_SILENT": "true", "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        proc = subprocess.run(
            [sys.executable, "-m", "inference_scaling", *DIGITS[1:], "logger=wandb", "verifier=llm_grader",
             f"verifier.base_url=http://127.0.0.1:{server.server_address[1]}/v1", "verifier.min_side=16",
             "verifier.max_retries=1", "verifier.backoff_s=0.01",
             f"verifier.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'run'}"],
            capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert f"Bearer {secret}" in _Grader.seen_keys
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    # Ungradable candidates (malformed answers, retried once) are scored -inf and counted; the run goes on.
    failed = metrics["verifier_failed"]
    assert metrics["n_candidates"] == 3 and 0 < failed < 60
    assert metrics["verifier_forward_passes"] == 60 + failed  # one request per candidate, one retry per failure
    statuses = {row["verifier_status"] for row in csv.DictReader((tmp_path / "run" / "results.csv").open())}
    assert "cached" in statuses and all(s == "cached" or s.startswith("failed") for s in statuses), statuses
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "metrics.json" for p in written) and any("wandb" in p.parts for p in written)
    assert all(secret.encode() not in p.read_bytes() for p in written)
    assert secret not in proc.stdout + proc.stderr


def test_verifier_cost_benchmark_counts_the_passes_it_expects(tmp_path):
    """experiments/bench_verifiers.py (make bench-verifiers) on the tiny and embedded rows: every verifier runs, and
    each one's own cost record agrees with the forward passes its batch size implies."""
    script = Path(__file__).resolve().parent.parent / "experiments" / "bench_verifiers.py"
    proc = subprocess.run([sys.executable, str(script), "--tiny-only", "--repeats", "1", "--batch", "8",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads((tmp_path / "verifiers.json").read_text())
    rows = written["rows"] + written["api"]  # the LLM grader's row: requests to a local stub
    from inference_scaling.verifiers import VERIFIERS

    assert {row["verifier"] for row in rows} >= set(VERIFIERS) - {"inception_is"}  # Inception: real-size only
    assert all(row["passes_per_image"] == row["expected_passes_per_image"] for row in rows), rows
    assert all(row["seconds_per_image"] > 0 and row["failed"] == 0 for row in rows)
    assert (tmp_path / "verifiers.md").read_text().count("\n|") >= len(rows)
