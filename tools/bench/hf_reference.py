#!/usr/bin/env python3
"""Time the Hugging Face reference on the same model shapes and audio as `hark bench`.

    python3 tools/bench/hf_reference.py --inputs DIR [--runs 3] [--decode-steps 32] [--seed 7]

DIR is written by `hark bench --save-inputs DIR` (or by `hark bench --compare-hf PYTHON`, which
runs this script itself after Hark's own measurements): config.json (the model shapes),
samples.f32 (the 16 kHz mono audio, float32 little-endian) and prompt.json (the prompt ids and
where the audio tokens sit in it).

The model is transformers' own Gemma4ForConditionalGeneration built from that config in bfloat16,
as HF users run E2B on a CPU, with random weights scaled like tools/reference/make_fixtures.py
(speed does not depend on the values). Stages, each the median of --runs warm runs after one
warm-up run, with the names `hark bench --json` uses:

  mel_ms               Gemma4AudioFeatureExtractor on the samples
  encoder_ms           audio tower + embed_audio (Gemma4Model.get_audio_features)
  prompt_prefill_ms    embeddings, per-layer inputs, audio merge, decoder with logits_to_keep=1
                       (KV-shared layers see only the last position, as generate() runs it), head
  decode_ms_per_token  greedy steps through Gemma4ForConditionalGeneration.forward with the cache,
                       as generate() runs them, never stopping early
  peak_rss_gb          peak resident memory of this process (VmHWM)

Prints one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import DynamicCache, Gemma4AudioFeatureExtractor, Gemma4Config, Gemma4ForConditionalGeneration


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_model(cfg_json: dict, seed: int) -> Gemma4ForConditionalGeneration:
    cfg_json = dict(cfg_json)
    # Released config.json files say `eoa_token_id`; the HF class calls it `eoa_token_index`.
    if "eoa_token_id" in cfg_json:
        cfg_json["eoa_token_index"] = cfg_json.pop("eoa_token_id")
    config = Gemma4Config.from_dict(cfg_json)
    model = Gemma4ForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    fill_weights(model, config, seed)
    return model


@torch.no_grad()
def fill_weights(model: Gemma4ForConditionalGeneration, config: Gemma4Config, seed: int) -> None:
    """The scales of make_fixtures.py `scale_weights`, drawn in place (no float32 copies)."""
    torch.manual_seed(seed)
    rnd = random.Random(seed)
    text = config.text_config
    for name, p in model.named_parameters():
        if name.endswith(("input_min", "input_max", "output_min", "output_max")):
            continue
        if name.endswith("per_dim_scale"):
            p.normal_(0.0, 0.5)
        elif name.endswith("layer_scalar"):
            p.uniform_(0.6, 1.2)
        elif name.endswith("embed_tokens.weight"):
            p.normal_(0.0, 1.0 / math.sqrt(text.hidden_size))
        elif name == "model.language_model.norm.weight":
            p.uniform_(4.0, 7.0)
        elif name.endswith("embed_tokens_per_layer.weight"):
            p.normal_(0.0, 1.0 / math.sqrt(max(text.hidden_size_per_layer_input, 1)))
        elif p.dim() == 1 and (name.endswith("norm.weight") or ".norm" in name or "layernorm" in name):
            p.uniform_(0.7, 1.3)
        elif name.endswith(".bias"):
            p.normal_(0.0, 0.1)
        elif p.dim() >= 2:
            fan_in = p.shape[1] * (p[0, 0].numel() if p.dim() > 2 else 1)
            p.normal_(0.0, 1.0 / math.sqrt(fan_in))
        elif p.dim() == 1:
            p.uniform_(0.7, 1.3)
        else:
            p.uniform_(0.6, 1.2)
    for _, module in model.named_modules():
        if hasattr(module, "input_min") and hasattr(module, "linear"):
            in_lim, out_lim = rnd.uniform(2.0, 3.0), rnd.uniform(2.5, 4.0)
            module.input_min.fill_(-in_lim)
            module.input_max.fill_(in_lim)
            module.output_min.fill_(-1.1 * out_lim)
            module.output_max.fill_(out_lim)


def peak_rss_gb() -> float:
    """VmHWM of this process. Not ru_maxrss: Linux carries that over from the parent across
    fork and exec, so under `hark bench --compare-hf` it would report Hark's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - start) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    cfg_json = json.loads((args.inputs / "config.json").read_text())
    samples = np.fromfile(args.inputs / "samples.f32", dtype="<f4")
    prompt = json.loads((args.inputs / "prompt.json").read_text())
    ids = torch.tensor([prompt["ids"]], dtype=torch.long)
    audio_at, audio_len = prompt["audio_at"], prompt["audio_len"]

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    model = build_model(cfg_json, args.seed)
    build_s = time.perf_counter() - start
    log(f"built the model in {build_s:.1f} s")
    lm = model.model.language_model
    text = model.config.text_config
    softcap = text.final_logit_softcapping
    fe = Gemma4AudioFeatureExtractor()

    is_audio = torch.zeros_like(ids, dtype=torch.bool)
    is_audio[0, audio_at : audio_at + audio_len] = True
    llm_ids = ids.masked_fill(is_audio, text.pad_token_id)

    def features():
        f = fe([samples], sampling_rate=16_000, return_tensors="pt")
        return f["input_features"].to(torch.bfloat16), f["input_features_mask"]

    def encoder(feats, mask):
        out = model.model.get_audio_features(feats, mask, return_dict=True)
        return out.pooler_output[out.attention_mask]

    def head(hidden):
        logits = model.lm_head(hidden[:, -1:, :])
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return logits

    def prefill(audio):
        # What Gemma4Model.forward does for generate()'s first step, minus the audio tower.
        embeds = lm.embed_tokens(llm_ids)
        per_layer = lm.get_per_layer_inputs(llm_ids, embeds)
        embeds = embeds.masked_scatter(is_audio[..., None].expand_as(embeds), audio.to(embeds.dtype))
        cache = DynamicCache(config=text)
        out = lm(inputs_embeds=embeds, per_layer_inputs=per_layer, past_key_values=cache, use_cache=True,
                 logits_to_keep=1)
        return head(out.last_hidden_state), cache

    def decode(first_logits, cache, steps):
        next_id = first_logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(steps):
            out = model(input_ids=next_id, past_key_values=cache, use_cache=True, logits_to_keep=1)
            next_id = out.logits[:, -1].argmax(-1, keepdim=True)

    stages = {"mel": [], "encoder": [], "prompt_prefill": [], "decode_per_token": []}
    with torch.inference_mode():
        for run in range(args.runs + 1):
            warm = run > 0
            (feats, mask), t = timed(features)
            if warm:
                stages["mel"].append(t)
            audio, t = timed(lambda: encoder(feats, mask))
            if audio.shape[0] != audio_len:
                raise SystemExit(f"the audio tower gave {audio.shape[0]} tokens, the prompt has {audio_len}")
            if warm:
                stages["encoder"].append(t)
            (logits, cache), t = timed(lambda: prefill(audio))
            if warm:
                stages["prompt_prefill"].append(t)
            # The warm-up decode is short: decode is the slow stage.
            steps = args.decode_steps if warm else min(args.decode_steps, 4)
            _, t = timed(lambda: decode(logits, cache, steps))
            if warm:
                stages["decode_per_token"].append(t / steps)
            log(f"run {run}: {'warm' if warm else 'warm-up'} done")

    med = {k: statistics.median(v) for k, v in stages.items()}
    seconds = len(samples) / 16_000
    report = {
        "label": f"HF {transformers.__version__} bf16",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": "bfloat16",
        "audio_seconds": seconds,
        "audio_tokens": audio_len,
        "prompt_tokens": ids.shape[1],
        "runs": args.runs,
        "decode_steps": args.decode_steps,
        "build_s": build_s,
        "mel_ms": med["mel"],
        "encoder_ms": med["encoder"],
        "encoder_ms_per_audio_s": med["encoder"] / seconds,
        "prompt_prefill_ms": med["prompt_prefill"],
        "decode_ms_per_token": med["decode_per_token"],
        "end_to_end_ms": med["mel"] + med["encoder"] + med["prompt_prefill"]
        + med["decode_per_token"] * args.decode_steps,
        "peak_rss_gb": peak_rss_gb(),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg()[0],
        "samples_ms": stages,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
