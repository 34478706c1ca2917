#!/usr/bin/env python3
"""Regenerate Hark's reference fixtures from the Hugging Face implementation.

    python3 tools/reference/make_fixtures.py [--out tests/fixtures]

Writes, deterministically (fixed seeds, fixed espeak-ng/sox invocations):
  audio/      speech clips (espeak-ng + sox), resampling variants, silence, noise, manifest.json
  models/     small random Gemma 4 checkpoints in the released Hugging Face layout
  golden/     per model x clip: the tensors of the `hark dump` contract, computed by
              transformers' Gemma4ForConditionalGeneration + Gemma4AudioFeatureExtractor in float32

The checkpoints are built from transformers' own config classes and saved with
`save_pretrained`, so their layout is exactly what the released checkpoint uses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, trainers
from transformers import (
    Gemma4AudioConfig,
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    Gemma4VisionConfig,
    GenerationConfig,
)
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gemma4_prompt import asr_instruction, asr_prompt_text  # noqa: E402

SAMPLE_RATE = 16_000
MAX_NEW_TOKENS = 12

# ---------------------------------------------------------------------------------------------
# Audio clips
# ---------------------------------------------------------------------------------------------

# (name, text, espeak voice, words per minute, pitch)
SPEECH_CLIPS = [
    ("fox", "the quick brown fox jumps over the lazy dog", "en-us", 160, 50),
    ("callback", "please call me back at seven thirty tomorrow", "en-gb+f3", 150, 60),
    ("lights", "turn on the kitchen lights", "en-us+m3", 210, 40),
    ("hello", "hello world", "en", 170, 50),
    (
        "april",
        "it was a bright cold day in april and the clocks were striking thirteen",
        "en-gb-x-rp+m2",
        125,
        45,
    ),
]
RESAMPLE_SOURCE = "hello"
# Sentences over the demonstration model's vocabulary (tools/train/vocabulary.txt), spoken by
# espeak-ng voices its training never used and absent from its training sentences: what the
# README's first command and the end-to-end tests transcribe with the embedded default model.
# Not golden (the fixture checkpoints have random weights; these clips are about real words).
DEMO_CLIPS = [
    ("numbers", "my number is 4 7 2 9", "en-us+f4", 150, 55),
    ("coffee", "can you bring the hot coffee tomorrow", "en-gb+travis", 170, 45),
]


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_wav_mono_f32(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1, path
        assert w.getframerate() == SAMPLE_RATE, path
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (data.astype(np.float32) / 32768.0).astype(np.float32)


def write_wav_s16(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def make_audio(out: Path) -> list[dict]:
    """Synthesise the clips; returns the manifest entries."""
    audio = out / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    manifest = []
    demo_names = {c[0] for c in DEMO_CLIPS}
    with tempfile.TemporaryDirectory() as tmp:
        for name, text, voice, wpm, pitch in SPEECH_CLIPS + DEMO_CLIPS:
            raw = Path(tmp) / f"{name}.raw.wav"
            run(["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(raw), text])
            dst = audio / f"{name}.wav"
            # -D: no dither, so the conversion is bit-for-bit repeatable.
            run(["sox", "-D", str(raw), "-r", "16000", "-c", "1", "-b", "16", "-e", "signed-integer", str(dst)])
            demo = name in demo_names
            entry = {"clip": name, "file": f"{name}.wav", "text": text, "voice": voice, "wpm": wpm,
                     "pitch": pitch, "sample_rate": 16000, "channels": 1, "golden": not demo}
            if demo:
                entry["demo"] = True
            manifest.append(entry)
            if name == RESAMPLE_SOURCE:
                for rate, channels, suffix in ((44100, 2, "44k1-stereo"), (8000, 1, "8k")):
                    var = audio / f"{name}-{suffix}.wav"
                    run(["sox", "-D", str(raw), "-r", str(rate), "-c", str(channels), "-b", "16",
                         "-e", "signed-integer", str(var)])
                    manifest.append({"clip": f"{name}-{suffix}", "file": var.name, "text": text,
                                     "voice": voice, "wpm": wpm, "pitch": pitch, "sample_rate": rate,
                                     "channels": channels, "golden": False, "resampled_from": name})
    # Pure digital silence, 2 s.
    write_wav_s16(audio / "silence.wav", np.zeros(2 * SAMPLE_RATE, dtype=np.float32))
    manifest.append({"clip": "silence", "file": "silence.wav", "text": "", "sample_rate": 16000,
                     "channels": 1, "golden": True})
    # Noise only: seeded white noise, low-passed (one-pole) to sound like room/fan noise, 2 s.
    rng = np.random.default_rng(1234)
    white = rng.standard_normal(2 * SAMPLE_RATE).astype(np.float64)
    brown = np.empty_like(white)
    acc = 0.0
    for i, x in enumerate(white):
        acc = 0.97 * acc + x
        brown[i] = acc
    brown = brown / np.max(np.abs(brown)) * 0.08
    write_wav_s16(audio / "noise.wav", brown.astype(np.float32))
    manifest.append({"clip": "noise", "file": "noise.wav", "text": "", "sample_rate": 16000,
                     "channels": 1, "golden": True})
    (audio / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


# ---------------------------------------------------------------------------------------------
# Tokenizer: a small BPE with byte fallback carrying Gemma 4's special-token strings
# ---------------------------------------------------------------------------------------------

BASE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
GEMMA4_SPECIALS = [
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>",
    '<|"|>', "<|think|>", "<|channel>", "<channel|>", "<|turn>", "<turn|>",
    "<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>",
]


def tokenizer_corpus() -> list[str]:
    lines = [asr_instruction("English"), asr_instruction("French"), "user", "model", "\n"]
    lines += [text for _, text, *_ in SPEECH_CLIPS]
    lines += ["hello world", "one two three four five six seven eight nine ten", "0 1 2 3 4 5 6 7 8 9"]
    return lines


def build_tokenizer(vocab_target: int, specials_at_end: bool) -> GemmaTokenizer:
    bpe = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    bpe.normalizer = normalizers.Replace(" ", "\u2581")
    bpe.train_from_iterator(tokenizer_corpus(), trainers.BpeTrainer(vocab_size=vocab_target, show_progress=False))
    spec = json.loads(bpe.to_str())
    learned = [tok for tok, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"]["merges"]]

    order = list(BASE_SPECIALS)
    if not specials_at_end:
        order += GEMMA4_SPECIALS
    order += [f"<0x{b:02X}>" for b in range(256)]
    order += [t for t in learned if t not in order]
    if specials_at_end:
        order += GEMMA4_SPECIALS
    vocab = {tok: i for i, tok in enumerate(order)}
    tok = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        add_bos_token=False,
        extra_special_tokens={
            "audio_token": "<|audio|>", "boa_token": "<|audio>", "eoa_token": "<audio|>",
            "image_token": "<|image|>", "boi_token": "<|image>", "eoi_token": "<image|>",
        },
    )
    tok.add_special_tokens({"additional_special_tokens": GEMMA4_SPECIALS})
    return tok


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def token_ids(tok: GemmaTokenizer) -> dict:
    ids = {s: tok.convert_tokens_to_ids(s) for s in BASE_SPECIALS + GEMMA4_SPECIALS}
    return ids


def model_specs() -> list[dict]:
    """The fixture checkpoints. Every value Hark reads from config.json differs from E2B somewhere."""
    e2b = dict(
        name="e2b-shaped",
        seed=11,
        dtype=torch.bfloat16,
        shard_bytes=None,
        vocab_target=420,
        specials_at_end=False,
        text=dict(
            hidden_size=64, intermediate_size=96, num_hidden_layers=10, num_attention_heads=4,
            num_key_value_heads=1, head_dim=32, global_head_dim=64,
            layer_types=(["sliding_attention"] * 4 + ["full_attention"]) * 2,
            sliding_window=24, num_kv_shared_layers=5, use_double_wide_mlp=True,
            hidden_size_per_layer_input=16, final_logit_softcapping=30.0,
        ),
        audio=dict(
            hidden_size=64, num_hidden_layers=3, num_attention_heads=4, subsampling_conv_channels=[128, 32],
            conv_kernel_size=5, attention_chunk_size=12, attention_context_left=13, attention_context_right=0,
            attention_logit_cap=50.0, output_proj_dims=64,
        ),
        clip_bounds="shared_qkv",
        vision=False,
    )
    varied = dict(
        name="varied",
        seed=22,
        dtype=torch.float32,
        shard_bytes=300_000,
        vocab_target=380,
        specials_at_end=True,
        text=dict(
            hidden_size=72, intermediate_size=120, num_hidden_layers=6, num_attention_heads=6,
            num_key_value_heads=2, head_dim=24,
            layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
            per_layer_config={2: {"head_dim": 40, "num_key_value_heads": 3}, 5: {"head_dim": 40, "num_key_value_heads": 3}},
            sliding_window=10, num_kv_shared_layers=0, use_double_wide_mlp=False,
            hidden_size_per_layer_input=8, final_logit_softcapping=15.0, rms_norm_eps=1e-5,
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 5_000.0},
                "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.5, "rope_theta": 200_000.0},
            },
        ),
        audio=dict(
            hidden_size=48, num_hidden_layers=2, num_attention_heads=3, subsampling_conv_channels=[128, 16],
            conv_kernel_size=3, attention_chunk_size=8, attention_context_left=6, attention_context_right=0,
            attention_logit_cap=30.0, output_proj_dims=80, rms_norm_eps=1e-5,
        ),
        clip_bounds="independent",
        vision=False,
    )
    vision = dict(
        name="with-vision",
        seed=33,
        dtype=torch.float16,
        shard_bytes=None,
        vocab_target=400,
        specials_at_end=False,
        text=dict(
            hidden_size=48, intermediate_size=64, num_hidden_layers=5, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, global_head_dim=48,
            layer_types=["sliding_attention", "full_attention", "sliding_attention", "sliding_attention", "full_attention"],
            sliding_window=16, num_kv_shared_layers=2, use_double_wide_mlp=True,
            hidden_size_per_layer_input=8, final_logit_softcapping=None,
        ),
        audio=dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, subsampling_conv_channels=[128, 8],
            conv_kernel_size=5, attention_chunk_size=12, attention_context_left=13, attention_context_right=0,
            attention_logit_cap=50.0, output_proj_dims=40,
        ),
        clip_bounds="shared_qkv",
        vision=True,
    )
    return [e2b, varied, vision]


# ---------------------------------------------------------------------------------------------
# Sampled configurations: a seeded generator of varied Gemma 4 checkpoints
# ---------------------------------------------------------------------------------------------

# How many sampled checkpoints, and the seed of the first (checkpoint k uses SAMPLED_SEED + k).
SAMPLED_COUNT = 10
SAMPLED_SEED = 4_000
# Sampled checkpoints are checked on two clips each (a short one and one drawn per checkpoint),
# which keeps tests/fixtures small; the hand-written checkpoints above cover all seven clips.
SAMPLED_FIRST_CLIP = "hello"
SAMPLED_OTHER_CLIPS = ["fox", "callback", "lights", "silence", "noise"]
# Checkpoint k of SAMPLED_FAVOUR gets the output-embedding row (the tied embedding or the
# untied lm_head) of one multimodal placeholder widened by the factor given (a wider logit spread), so that greedy
# decoding generates that placeholder and has to feed it back (transformers feeds the pad id).
SAMPLED_FAVOUR = {1: ("<|image|>", 3.0), 6: ("<|audio|>", 3.0)}


def sampled_spec(index: int) -> dict:
    """Checkpoint `index` of the sampled set: every choice drawn from `random.Random(seed)`.

    Some dimensions cycle with the index instead, so that any 8 consecutive checkpoints cover
    all of them: storage dtype (bf16, f16, f32), sharded or single file, vision tower or not,
    flat `global_head_dim` or `per_layer_config`, and the layer-type pattern.
    """
    seed = SAMPLED_SEED + index
    rng = random.Random(seed)
    dtype = [torch.bfloat16, torch.float16, torch.float32][index % 3]
    pattern = ["e2b", "alternating", "gemma3", "random"][index % 4]

    # --- text decoder ---
    # f32 storage takes twice the bytes: narrower there, to keep tests/fixtures small.
    hidden = rng.choice([32, 48, 64] if dtype != torch.float32 else [32, 40, 48])
    if pattern == "e2b":
        # E2B's (4 sliding + 1 full) pattern; checkpoint 0 has E2B's full depth of 35 layers.
        n_layers = 35 if index == 0 else 5 * rng.choice([1, 2, 3])
        types = [("full_attention" if i % 5 == 4 else "sliding_attention") for i in range(n_layers)]
    elif pattern == "alternating":
        n_layers = 2 * rng.choice([2, 3, 4])
        types = ["sliding_attention", "full_attention"] * (n_layers // 2)
    elif pattern == "gemma3":
        n_layers = rng.choice([6, 12])
        types = [("full_attention" if i % 6 == 5 else "sliding_attention") for i in range(n_layers)]
    else:
        n_layers = rng.choice([3, 4, 7, 9])
        types = [rng.choice(["sliding_attention", "full_attention"]) for _ in range(n_layers - 1)]
        types.append("full_attention")  # HF forces the last layer to full attention
    deep = n_layers > 16
    heads = rng.choice([1, 2, 4] if deep else [2, 3, 4, 6])
    kv_choices = [d for d in range(1, heads + 1) if heads % d == 0]
    kv_heads = rng.choice(kv_choices)  # 1: MQA, heads: MHA, else GQA
    head_dim = rng.choice([8, 16, 24] if deep else [8, 16, 24, 32])
    full_head_dim = rng.choice([head_dim, 2 * head_dim, head_dim + 8])
    full_kv_heads = rng.choice(kv_choices)
    k_eq_v = rng.random() < 0.25
    flat_form = index % 2 == 0
    # Longest KV-sharing tail that still leaves every layer type a cache-owning layer (HF's rule).
    max_shared = 0
    for s in range(1, n_layers):
        if set(types[: n_layers - s]) == set(types):
            max_shared = s
    n_shared = rng.choice([0, 0, max_shared // 2, max_shared]) if max_shared else 0
    if index == 0:
        n_shared = 20  # E2B: layers 15..34 reuse the K/V of layers 13 (sliding) and 14 (full)
    sliding_window = rng.choice([6, 11, 24, 40]) if rng.random() < 0.6 else rng.choice([128, 512])
    sliding_theta = rng.choice([100.0, 5_000.0, 10_000.0])
    full_rope = rng.choice([
        {"rope_type": "proportional", "partial_rotary_factor": rng.choice([0.25, 0.5, 0.125, 1.0]),
         "rope_theta": rng.choice([10_000.0, 200_000.0, 1_000_000.0])},
        {"rope_type": "default", "rope_theta": rng.choice([10_000.0, 500_000.0])},
    ])
    ple = rng.choice([4, 8] if deep else [0, 4, 8, 16])
    if ple == 0:
        # transformers 5.23.0 cannot run KV sharing without per-layer embeddings
        # (`_maybe_slice_kv_shared_inputs` slices `per_layer_inputs`, which is None then).
        n_shared = 0
    text = dict(
        hidden_size=hidden,
        intermediate_size=rng.choice([hidden, 2 * hidden]) // (2 if deep else 1),
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        layer_types=types,
        sliding_window=sliding_window,
        num_kv_shared_layers=n_shared,
        use_double_wide_mlp=rng.random() < 0.5,
        hidden_size_per_layer_input=ple,
        final_logit_softcapping=rng.choice([None, 10.0, 30.0, 50.0]),
        rms_norm_eps=rng.choice([1e-6, 1e-5]),
        attention_k_eq_v=k_eq_v,
        attention_bias=rng.random() < 0.25,
        tie_word_embeddings=rng.random() < 0.8,
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": sliding_theta},
            "full_attention": full_rope,
        },
    )
    if flat_form:
        text["global_head_dim"] = full_head_dim
        if k_eq_v:
            text["num_global_key_value_heads"] = full_kv_heads
    else:
        text["per_layer_config"] = {
            i: {"head_dim": full_head_dim, "num_key_value_heads": full_kv_heads}
            for i, t in enumerate(types) if t == "full_attention"
        }

    # --- audio encoder ---
    a_heads = rng.choice([1, 2, 3, 4])
    a_hidden = a_heads * rng.choice([8, 12, 16])
    chunk = rng.choice([4, 6, 8, 12])
    audio = dict(
        hidden_size=a_hidden,
        num_hidden_layers=rng.choice([1, 2, 3]),
        num_attention_heads=a_heads,
        # The first conv must have 128 channels: HF sizes `input_proj_linear` as
        # (channels[0] // 4) * channels[1], which is the flattened width only when channels[0]
        # equals the 128 mel bins.
        subsampling_conv_channels=[128, rng.choice([4, 8, 16, 32])],
        conv_kernel_size=rng.choice([1, 3, 5, 7]),
        attention_chunk_size=chunk,
        # The released encoder is causal (no right context); the left context may not exceed the
        # chunk by more than one frame (HF's relative-position table is sized from the chunk).
        attention_context_left=rng.randint(2, chunk + 1),
        attention_context_right=0,
        attention_logit_cap=rng.choice([20.0, 50.0]),
        output_proj_dims=rng.choice([24, 40, hidden, 2 * hidden]),
        rms_norm_eps=rng.choice([1e-6, 1e-5]),
    )
    if index == 0:
        text["use_double_wide_mlp"] = True  # as E2B: the 20 KV-shared layers have twice the MLP
    if index == 4:
        audio["attention_context_left"] = 2  # each frame attends to itself alone
    return dict(
        name=f"sampled-{index:02d}",
        seed=seed,
        dtype=dtype,
        shard_bytes=[None, 400_000][(index // 2) % 2] if index % 5 != 4 else 150_000,
        vocab_target=rng.choice([330, 380, 420]),
        specials_at_end=rng.random() < 0.4,
        text=text,
        audio=audio,
        clip_bounds=rng.choice(["shared_qkv", "independent"]),
        vision=index % 4 == 3,
        flat_form=flat_form,
        favour=SAMPLED_FAVOUR.get(index),
        # A deep stack of random layers with sharp attention is chaotic (f32 rounding in its input
        # moves its logits by percents, in transformers as in any other implementation): smaller
        # q/k norm weights soften the attention there. `golden_for` checks the conditioning.
        qk_norm=(0.3, 0.6) if deep else None,
        check_conditioning=True,
        # Small decoders give flatter logits than the hand-written fixtures: a wider final norm
        # keeps greedy margins clear of the 0.05 the golden test stops comparing at, but not so
        # wide that the final softcap saturates (which would flatten them again).
        final_norm=tuple(f * min(10.0, (text["final_logit_softcapping"] or 1e9) / 3) for f in (0.8, 1.2)),
        clips=[SAMPLED_FIRST_CLIP, rng.choice(SAMPLED_OTHER_CLIPS)],
    )


def sampled_specs() -> list[dict]:
    return [sampled_spec(i) for i in range(SAMPLED_COUNT)]


def scale_weights(model: Gemma4ForConditionalGeneration, spec: dict, gen: torch.Generator) -> None:
    """Random weights with O(1) activations and well separated greedy logits.

    The default 0.02 init gives near-uniform logits (greedy ties); here every matrix gets a
    1/sqrt(fan_in) scale, norms hover around 1, and the embedding is wide enough that logits
    have a spread of a few units.
    """
    text_hidden = spec["text"]["hidden_size"]

    def normal(shape, std):
        return torch.randn(shape, generator=gen, dtype=torch.float32) * std

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen, dtype=torch.float32)

    bounds = {}
    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]) + sorted(
        model.named_buffers(), key=lambda kv: kv[0]
    ):
        if not (name.startswith("model.") or name == "lm_head.weight"):
            continue
        with torch.no_grad():
            if name.endswith(("input_min", "input_max", "output_min", "output_max")):
                continue  # set below, per ClippableLinear
            if name.endswith("inv_timescales") or name.endswith("_inv_freq") or name.endswith("embed_scale"):
                continue
            if name.endswith("softcap") and p.dim() == 0:
                continue
            if spec.get("qk_norm") and name.endswith(("self_attn.q_norm.weight", "self_attn.k_norm.weight")):
                # Softer decoder attention for deep stacks (see `sampled_spec`).
                p.copy_(uniform(p.shape, *spec["qk_norm"]))
            elif name.endswith("per_dim_scale"):
                p.copy_(normal(p.shape, 0.5))
            elif name.endswith("layer_scalar"):
                p.copy_(uniform(p.shape, 0.6, 1.2))
            elif name.endswith("embed_tokens.weight"):
                p.copy_(normal(p.shape, 1.0 / math.sqrt(text_hidden)))
            elif name == "model.language_model.norm.weight":
                # The tied head reads the final norm: a wider norm gives logits a spread of a few units.
                p.copy_(uniform(p.shape, *spec.get("final_norm", (4.0, 7.0))))
            elif name.endswith("embed_tokens_per_layer.weight"):
                p.copy_(normal(p.shape, 1.0 / math.sqrt(max(spec["text"]["hidden_size_per_layer_input"], 1))))
            elif p.dim() == 1 and (name.endswith("norm.weight") or ".norm" in name or "layernorm" in name):
                p.copy_(uniform(p.shape, 0.7, 1.3))
            elif name.endswith(".bias"):
                p.copy_(normal(p.shape, 0.1))
            elif p.dim() >= 2:
                fan_in = p.shape[1] * (p[0, 0].numel() if p.dim() > 2 else 1)
                p.copy_(normal(p.shape, 1.0 / math.sqrt(fan_in)))
            elif p.dim() == 1:
                p.copy_(uniform(p.shape, 0.7, 1.3))
            elif p.dim() == 0:
                p.copy_(uniform(p.shape, 0.6, 1.2))

    # ClippableLinear bounds: finite, so the clamps really bite on O(1) activations.
    for mod_name, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if not hasattr(mod, "input_min") or not hasattr(mod, "linear"):
            continue
        if spec["clip_bounds"] == "shared_qkv" and mod_name.endswith(("k_proj", "v_proj")):
            key = mod_name.rsplit(".", 1)[0] + ".q_proj"
        else:
            key = mod_name
        if key not in bounds:
            in_lim = float(uniform((), 2.0, 3.0))
            out_lim = float(uniform((), 2.5, 4.0))
            bounds[key] = (-in_lim, in_lim, -out_lim * 1.1, out_lim)
        lo_in, hi_in, lo_out, hi_out = bounds[key]
        with torch.no_grad():
            mod.input_min.fill_(lo_in)
            mod.input_max.fill_(hi_in)
            mod.output_min.fill_(lo_out)
            mod.output_max.fill_(hi_out)


def build_checkpoint(spec: dict, out_dir: Path) -> tuple[Path, GemmaTokenizer]:
    tok = build_tokenizer(spec["vocab_target"], spec["specials_at_end"])
    ids = token_ids(tok)
    vocab_size = len(tok)
    text = dict(spec["text"])
    text.update(vocab_size=vocab_size, vocab_size_per_layer_input=vocab_size,
                pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"])
    text_cfg = Gemma4TextConfig(**text)
    audio_cfg = Gemma4AudioConfig(**spec["audio"])
    vision_cfg = None
    if spec["vision"]:
        vision_cfg = Gemma4VisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=2, head_dim=16,
                                        position_embedding_size=64, patch_size=4, pooling_kernel_size=2)
    # An untied head must be untied at the top level too (that is the flag the model reads).
    untied = {} if text.get("tie_word_embeddings", True) else {"tie_word_embeddings": False}
    cfg = Gemma4Config(
        **untied,
        text_config=text_cfg, audio_config=audio_cfg, vision_config=vision_cfg,
        boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"], audio_token_id=ids["<|audio|>"],
        boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"], eos_token_id=[ids["<eos>"], ids["<turn|>"]],
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
    )
    cfg.architectures = ["Gemma4ForConditionalGeneration"]
    torch.manual_seed(spec["seed"])
    model = Gemma4ForConditionalGeneration(cfg).eval()
    gen = torch.Generator().manual_seed(spec["seed"])
    scale_weights(model, spec, gen)
    if spec.get("favour"):
        token, factor = spec["favour"]
        with torch.no_grad():
            model.get_output_embeddings().weight[ids[token]] *= factor

    ckpt = out_dir / spec["name"]
    if ckpt.exists():
        shutil.rmtree(ckpt)
    ckpt.mkdir(parents=True)
    model = model.to(spec["dtype"])
    save_kwargs = {"safe_serialization": True}
    if spec["shard_bytes"]:
        save_kwargs["max_shard_size"] = spec["shard_bytes"]
    model.save_pretrained(ckpt, **save_kwargs)
    # The released config.json names the end-of-audio id `eoa_token_id`; HF's class calls it
    # `eoa_token_index`. Write the released spelling for the E2B-shaped checkpoint, keep HF's elsewhere.
    cfg_json = json.loads((ckpt / "config.json").read_text())
    if spec["name"] == "e2b-shaped" or spec.get("flat_form"):
        cfg_json["eoa_token_id"] = cfg_json.pop("eoa_token_index")
        # Released E2B config.json uses the flat `global_head_dim` form, not `per_layer_config`.
        tc = cfg_json["text_config"]
        tc.pop("per_layer_config", None)
        tc["global_head_dim"] = spec["text"]["global_head_dim"]
        if "num_global_key_value_heads" in spec["text"]:
            tc["num_global_key_value_heads"] = spec["text"]["num_global_key_value_heads"]
        (ckpt / "config.json").write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
    GenerationConfig(
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"], ids["<|tool_response>"]],
        do_sample=True, temperature=1.0, top_k=64, top_p=0.95,
    ).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    (ckpt / "processor_config.json").write_text(json.dumps({
        "processor_class": "Gemma4Processor", "audio_seq_length": 750, "audio_ms_per_token": 40,
        "feature_extractor": json.loads(Gemma4AudioFeatureExtractor().to_json_string()),
    }, indent=2, sort_keys=True) + "\n")
    # Keep only what the released layout has.
    for extra in ckpt.glob("*"):
        if extra.name not in {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                              "processor_config.json", "model.safetensors", "model.safetensors.index.json"} \
                and not extra.name.startswith("model-"):
            extra.unlink()
    return ckpt, tok


# ---------------------------------------------------------------------------------------------
# Golden outputs (the `hark dump` contract)
# ---------------------------------------------------------------------------------------------


def golden_for(ckpt: Path, tok: GemmaTokenizer, wav: np.ndarray, language: str = "English",
               check_conditioning: bool = False) -> dict:
    from transformers import Gemma4Processor
    from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

    # The reference is the saved file loaded as transformers loads any checkpoint, in float32:
    # bf16/f16 weights are widened exactly, and the non-persistent buffers (the embedding scale,
    # the RoPE tables, the audio timescales) are computed afresh in float32, as they are on every
    # real load. Never an in-memory model cast to the storage dtype and back: that would round
    # those buffers, which no loading path does.
    model = Gemma4ForConditionalGeneration.from_pretrained(ckpt, dtype=torch.float32).eval()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        assert t.dtype == torch.float32 or not t.is_floating_point(), (name, t.dtype)
    proc = Gemma4Processor(feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=Gemma4ImageProcessor(),
                           tokenizer=tok, video_processor=Gemma4VideoProcessor())
    inputs = proc(text=asr_prompt_text(tok.audio_token, language), audio=[wav], return_tensors="pt")
    captured: dict[str, torch.Tensor] = {}
    hooks = []
    tower = model.model.audio_tower

    def keep(name, fn=lambda o: o):
        def hook(_m, _i, out):
            captured[name] = fn(out).detach().clone()
        return hook

    hooks.append(tower.subsample_conv_projection.register_forward_hook(keep("subsample", lambda o: o[0][0])))
    for i, layer in enumerate(tower.layers):
        hooks.append(layer.register_forward_hook(keep(f"audio_layer.{i}", lambda o: o[0])))
    hooks.append(tower.output_proj.register_forward_hook(keep("audio_tower", lambda o: o[0])))
    hooks.append(model.model.embed_audio.register_forward_hook(keep("embed_audio_all", lambda o: o[0])))
    with torch.no_grad():
        out = model(**inputs, use_cache=False)
    for h in hooks:
        h.remove()
    if check_conditioning:
        # A reference is only useful if rounding-level changes of its input move its output by
        # much less than the golden tolerance (1e-3 of max): jitter the audio embeddings by one
        # part in a million and require the prompt logits to move by under 5e-4 of max.
        noise = torch.Generator().manual_seed(0)
        jitter = model.model.embed_audio.register_forward_hook(
            lambda _m, _i, o: o * (1 + 1e-6 * torch.randn(o.shape, generator=noise)))
        with torch.no_grad():
            moved = model(**inputs, use_cache=False).logits[0, -1]
        jitter.remove()
        ref = out.logits[0, -1]
        rel = float((moved - ref).abs().max() / ref.abs().max())
        assert rel < 5e-4, f"{ckpt.name}: ill-conditioned reference (1e-6 input jitter moves logits {rel:.1e} of max)"

    mel = inputs["input_features"][0].float()
    mel_mask = inputs["input_features_mask"][0]
    # The subsampled validity mask: step j valid iff mel frame 4j valid (mask[::2][::2]).
    sub_mask = mel_mask[::2][::2]
    t4 = captured["subsample"].shape[0]
    sub_mask = sub_mask[:t4]
    audio_embeds = captured["embed_audio_all"][sub_mask]
    prompt_ids = inputs["input_ids"][0]
    n_audio = int((prompt_ids == tok.audio_token_id).sum())
    assert n_audio == audio_embeds.shape[0], (n_audio, audio_embeds.shape)

    gen_cfg = GenerationConfig.from_pretrained(ckpt)
    with torch.no_grad():
        g = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, eos_token_id=gen_cfg.eos_token_id,
                           pad_token_id=gen_cfg.pad_token_id, top_k=None, top_p=None, temperature=None)
    generated = g.sequences[0, prompt_ids.shape[0]:]
    margins = []
    for step_scores in g.scores:
        top2 = torch.topk(step_scores[0].float(), 2).values
        margins.append(float(top2[0] - top2[1]))
    # generate() stops after emitting a stop id; the stop id itself is part of the sequence.
    tensors = {
        "mel": mel.contiguous(),
        "mel_mask": mel_mask.to(torch.float32).contiguous(),
        "subsample": captured["subsample"].contiguous(),
        "audio_tower": captured["audio_tower"].contiguous(),
        "audio_embeds": audio_embeds.contiguous(),
        "prompt_ids": prompt_ids.to(torch.int64).contiguous(),
        "prompt_logits_last": out.logits[0, -1].float().contiguous(),
        "generated_ids": generated.to(torch.int64).contiguous(),
        "generated_margins": torch.tensor(margins, dtype=torch.float32),
        "subsample_mask": sub_mask.to(torch.float32).contiguous(),
    }
    for i in range(len(tower.layers)):
        tensors[f"audio_layer.{i}"] = captured[f"audio_layer.{i}"].contiguous()
    return tensors


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests" / "fixtures"))
    ap.add_argument("--only-sampled", action="store_true",
                    help="regenerate only the sampled-* checkpoints and their references, reading the "
                         "committed clips (the rest of the output is left as it is)")
    args = ap.parse_args()
    out = Path(args.out)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    models_dir = out / "models"
    golden_dir = out / "golden"
    if args.only_sampled:
        manifest = json.loads((out / "audio" / "manifest.json").read_text())
        specs = sampled_specs()
        summary = json.loads((golden_dir / "summary.json").read_text())
        for name in list(summary):
            if name.startswith("sampled-"):
                del summary[name]
        for d in list(golden_dir.glob("sampled-*")) + list(models_dir.glob("sampled-*")):
            shutil.rmtree(d)
    else:
        manifest = make_audio(out)
        specs = model_specs() + sampled_specs()
        summary = {}
        if golden_dir.exists():
            shutil.rmtree(golden_dir)
        for d in models_dir.glob("sampled-*"):
            shutil.rmtree(d)
    for spec in specs:
        ckpt, tok = build_checkpoint(spec, models_dir)
        (golden_dir / spec["name"]).mkdir(parents=True, exist_ok=True)
        clips = spec.get("clips") or [e["clip"] for e in manifest if e["golden"]]
        for entry in manifest:
            if entry["clip"] not in clips:
                continue
            assert entry["golden"], entry
            wav = read_wav_mono_f32(out / "audio" / entry["file"])
            tensors = golden_for(ckpt, tok, wav, check_conditioning=spec.get("check_conditioning", False))
            dst = golden_dir / spec["name"] / f"{entry['clip']}.safetensors"
            # No safetensors metadata: its key order is not stable between runs.
            save_file(tensors, str(dst))
            generated = tensors["generated_ids"].tolist()
            placeholders = sorted({tok.convert_tokens_to_ids(t) for t in ("<|image|>", "<|audio|>", "<|video|>")}
                                  & set(generated))
            summary.setdefault(spec["name"], {})[entry["clip"]] = {
                "prompt_len": int(tensors["prompt_ids"].shape[0]),
                "audio_tokens": int(tensors["audio_embeds"].shape[0]),
                "generated_ids": generated,
                "min_margin": round(float(tensors["generated_margins"].min()), 4),
            }
            if placeholders:
                summary[spec["name"]][entry["clip"]]["generated_placeholders"] = placeholders
            print(f"{spec['name']:>12} {entry['clip']:>10}: prompt {summary[spec['name']][entry['clip']]['prompt_len']}"
                  f" tokens, generated {generated}"
                  f" (min margin {summary[spec['name']][entry['clip']]['min_margin']})"
                  + (f" placeholders {placeholders}" if placeholders else ""), flush=True)
    (golden_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
