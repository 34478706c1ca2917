#!/usr/bin/env python3
"""Regenerate Hark's natively-quantized checkpoint fixtures and their transformers references.

    python3 tools/reference/make_quantized.py [--out tests/fixtures]

One small random Gemma 4 model (transformers' own classes, weights scaled as in
make_fixtures.py; dimensions multiples of 32, the text hidden size 256 so Q4_K super-blocks
tile the decoder's rows) is written twice, in the layouts the quantized E2B releases use:

  models/quant-gguf/model.gguf      CrispASR's `gemma4e2b` GGUF layout (tensor names, metadata
                                    keys, token list, mel resources as its converter writes
                                    them); tensor types as crispasr-quantize would leave them,
                                    mixed so one file holds the types Hark reads: Q8_0 (audio
                                    layer 0, decoder layers 0 and 2, token embedding), Q4_K
                                    (decoder layer 1, the per-layer model projection) with
                                    crispasr-quantize's Q4_0 fallback where a row is not a
                                    multiple of 256 (audio layer 1, the per-layer-embedding
                                    table, narrow projections), F16 (convolutions, the
                                    subsampler projection), BF16 (the audio embedding
                                    projection), F32 (vectors and scalars).
  models/quant-gguf/tokenizer.json  the tokenizer (a GGUF has only the token strings)
  models/quant-gguf/hf-config/      config.json, generation_config.json, processor_config.json
                                    of the source model (for the "config.json beside" case)
  models/quant-gptq/                W4A16 AutoRound checkpoint (`packing_format`
                                    auto_round:auto_gptq, i.e. the GPTQ v1 packing): every
                                    decoder-layer linear whose input size is a multiple of the
                                    group size as qweight/qzeros/scales/g_idx, 4 bit, group 128,
                                    symmetric; everything else (audio tower, projectors,
                                    embeddings, norms) bf16.
  golden/quant-gguf/<clip>.safetensors, golden/quant-gptq/<clip>.safetensors
                                    transformers 5.23.0 (float32) running the DEQUANTIZED
                                    weights, in the `hark dump` golden format of make_fixtures.

Dequantization references: GGUF blocks through gguf-py's `gguf.quants.dequantize` (Q4_K is
quantized here, following ggml's block layout, since gguf-py only dequantizes it); the GPTQ
packing is checked against auto-round's own `QuantLinear` (qlinear_torch_zp, the class its
auto_gptq export packs with) when auto-round is installed (auto-round 0.16.1 imports with
`pip install --no-deps auto-round==0.16.1 py-cpuinfo psutil accelerate datasets`).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, quants
from safetensors.numpy import load_file
from safetensors.torch import save_file
from transformers import (
    Gemma4AudioConfig,
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4TextConfig,
    GenerationConfig,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402

CLIPS = ["hello", "lights"]
GROUP = 128

SPEC = dict(
    name="quant-base",
    seed=44,
    vocab_target=150,
    specials_at_end=False,
    text=dict(
        hidden_size=256, intermediate_size=256, num_hidden_layers=3, num_attention_heads=2,
        num_key_value_heads=1, head_dim=64, global_head_dim=128,
        layer_types=["sliding_attention", "full_attention", "full_attention"],
        sliding_window=24, num_kv_shared_layers=1, use_double_wide_mlp=False,
        hidden_size_per_layer_input=64, final_logit_softcapping=30.0,
    ),
    audio=dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, subsampling_conv_channels=[128, 16],
        conv_kernel_size=5, attention_chunk_size=12, attention_context_left=13, attention_context_right=0,
        attention_logit_cap=50.0, output_proj_dims=64,
    ),
    clip_bounds="shared_qkv",
)


# ---------------------------------------------------------------------------------------------
# The source model
# ---------------------------------------------------------------------------------------------


def build_source(workdir: Path):
    """A float32 HF checkpoint in `workdir/source`, its tensors, tokenizer and JSON files."""
    tok = mf.build_tokenizer(SPEC["vocab_target"], SPEC["specials_at_end"])
    ids = mf.token_ids(tok)
    text = dict(SPEC["text"])
    text.update(vocab_size=len(tok), vocab_size_per_layer_input=len(tok), pad_token_id=ids["<pad>"],
                eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"])
    cfg = Gemma4Config(
        text_config=Gemma4TextConfig(**text), audio_config=Gemma4AudioConfig(**SPEC["audio"]), vision_config=None,
        boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"], audio_token_id=ids["<|audio|>"],
        boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"], eos_token_id=[ids["<eos>"], ids["<turn|>"]],
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
    )
    cfg.architectures = ["Gemma4ForConditionalGeneration"]
    torch.manual_seed(SPEC["seed"])
    model = Gemma4ForConditionalGeneration(cfg).eval()
    mf.scale_weights(model, SPEC, torch.Generator().manual_seed(SPEC["seed"]))
    src = workdir / "source"
    model.save_pretrained(src, safe_serialization=True)
    cfg_json = json.loads((src / "config.json").read_text())
    # The released E2B spelling: `eoa_token_id` and the flat `global_head_dim`.
    cfg_json["eoa_token_id"] = cfg_json.pop("eoa_token_index")
    tc = cfg_json["text_config"]
    tc.pop("per_layer_config", None)
    tc["global_head_dim"] = SPEC["text"]["global_head_dim"]
    gen = GenerationConfig(
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"], ids["<|tool_response>"]],
        do_sample=True, temperature=1.0, top_k=64, top_p=0.95,
    )
    processor = {
        "processor_class": "Gemma4Processor", "audio_seq_length": 750, "audio_ms_per_token": 40,
        "feature_extractor": json.loads(Gemma4AudioFeatureExtractor().to_json_string()),
    }
    tensors = load_file(str(src / "model.safetensors"))
    return tok, cfg_json, gen, processor, tensors


def write_side_files(dst: Path, cfg_json: dict, gen: GenerationConfig, processor: dict, tok=None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(cfg_json, indent=2, sort_keys=True) + "\n")
    gen.save_pretrained(dst)
    (dst / "processor_config.json").write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    if tok is not None:
        save_tokenizer(dst, tok)


def save_tokenizer(dst: Path, tok) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_pretrained(tmp)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(Path(tmp) / name, dst / name)


def golden(ref_dir: Path, tok, out_dir: Path) -> dict:
    """transformers on the checkpoint in `ref_dir` (float32): one golden file per clip."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    fixtures = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
    for clip in CLIPS:
        wav = mf.read_wav_mono_f32(fixtures / "audio" / f"{clip}.wav")
        tensors = mf.golden_for(ref_dir, tok, wav)
        save_file(tensors, str(out_dir / f"{clip}.safetensors"))
        summary[clip] = {"generated_ids": tensors["generated_ids"].tolist(),
                         "min_margin": round(float(tensors["generated_margins"].min()), 4)}
        print(f"{out_dir.name:>12} {clip:>8}: generated {summary[clip]['generated_ids']}"
              f" (min margin {summary[clip]['min_margin']})", flush=True)
    return summary


def reference_checkpoint(workdir: Path, name: str, cfg_json: dict, gen, processor: dict, tok,
                         weights: dict[str, np.ndarray]) -> Path:
    """An f32 HF checkpoint holding the dequantized weights, for transformers to run."""
    ref = workdir / f"ref-{name}"
    cfg = dict(cfg_json)
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    write_side_files(ref, cfg, gen, processor, tok)
    model = Gemma4ForConditionalGeneration.from_pretrained(workdir / "source", dtype=torch.float32).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight"]  # tied to the embedding
    assert not missing and not unexpected, (missing, unexpected)
    model.save_pretrained(ref, safe_serialization=True)
    (ref / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return ref


# ---------------------------------------------------------------------------------------------
# GGUF, CrispASR layout
# ---------------------------------------------------------------------------------------------

# CrispASR's models/convert-gemma4-e2b-to-gguf.py renames a Hugging Face tensor by these
# substring replacements, applied in order (its `map_tensor_name`).
CRISPASR_RENAMES = [
    ("model.audio_tower.layers.", "audio.layers."),
    ("model.audio_tower.output_proj.", "audio.output_proj."),
    ("model.audio_tower.subsample_conv_projection.", "audio.subsample."),
    (".linear.weight", ".weight"),
    (".feed_forward1.", ".ffn1."), (".feed_forward2.", ".ffn2."),
    (".ffw_layer_1.", ".up."), (".ffw_layer_2.", ".down."),
    (".pre_layer_norm.", ".pre_ln."), (".post_layer_norm.", ".post_ln."),
    (".lconv1d.", ".conv."), (".depthwise_conv1d.", ".dw_conv."),
    (".linear_start.", ".gate_proj."), (".linear_end.", ".out_proj."), (".conv_norm.", ".conv_ln."),
    (".norm_pre_attn.", ".attn_pre_ln."), (".norm_post_attn.", ".attn_post_ln."), (".norm_out.", ".out_ln."),
    (".self_attn.", ".attn."),
    (".q_proj.", ".q."), (".k_proj.", ".k."), (".v_proj.", ".v."), (".post.", ".o."),
    (".relative_k_proj.", ".rel_k."),
    (".input_proj_linear.", ".input_proj."),
    (".layer0.conv.", ".conv0."), (".layer0.norm.", ".norm0."),
    (".layer1.conv.", ".conv1."), (".layer1.norm.", ".norm1."),
    ("model.embed_audio.embedding_projection.", "audio.embed_proj."),
    ("model.language_model.", "llm."),
    (".input_layernorm.", ".attn_norm."), (".post_attention_layernorm.", ".post_attn_norm."),
    (".pre_feedforward_layernorm.", ".pre_ffn_norm."), (".post_feedforward_layernorm.", ".post_ffn_norm."),
    (".post_per_layer_input_norm.", ".post_ple_norm."),
    (".per_layer_input_gate.", ".ple_gate."), (".per_layer_projection.", ".ple_proj."),
    (".mlp.gate_proj.", ".ffn.gate."), (".mlp.up_proj.", ".ffn.up."), (".mlp.down_proj.", ".ffn.down."),
]


def crispasr_name(hf: str) -> str:
    name = hf
    for a, b in CRISPASR_RENAMES:
        name = name.replace(a, b)
    return name


def gguf_type(gname: str, arr: np.ndarray) -> T:
    """The stored type of one tensor (see the module docstring)."""
    if arr.ndim <= 1:
        return T.F32
    if arr.ndim >= 3:
        return T.F16
    # crispasr-quantize: Q4_K where the row tiles into super-blocks of 256, else Q4_0.
    q4 = T.Q4_K if arr.shape[-1] % 256 == 0 else T.Q4_0
    if gname == "audio.embed_proj.weight":
        return T.BF16
    if gname == "audio.subsample.input_proj.weight":
        return T.F16
    if gname == "llm.embed_tokens.weight":
        return T.Q8_0
    m = re.match(r"(audio|llm)\.layers\.(\d+)\.", gname)
    if m:
        return q4 if int(m.group(2)) % 2 == 1 else T.Q8_0
    return q4


def quantize_q4_k(x: np.ndarray) -> np.ndarray:
    """ggml Q4_K blocks (uint8 [rows, cols / 256 * 144]) for a float matrix.

    Block layout (ggml `block_q4_K`): f16 d, f16 dmin, 12 bytes of 6-bit sub-block scales and
    mins (bytes 0-3: scales 0-3 low 6 bits, top 2 bits = scales 4-7 bits 4-5; bytes 4-7 the
    same for the mins; bytes 8-11: scale 4-7 low nibble | min 4-7 low nibble << 4), then 128
    bytes where byte 32c + l holds sub-block 2c's value l in its low nibble and 2c + 1's in its
    high nibble; w = d·sc·q − dmin·m. Scales are chosen by a plain min/max fit (ggml's own
    search is better, but any valid block serves a loader test).
    """
    rows, cols = x.shape
    assert cols % 256 == 0
    blocks = x.astype(np.float32).reshape(-1, 8, 32)
    out = np.zeros((blocks.shape[0], 144), dtype=np.uint8)
    for b, sb in enumerate(blocks):
        lo = np.minimum(sb.min(axis=1), 0.0)
        hi = sb.max(axis=1)
        scale = np.maximum(hi - lo, 1e-12) / 15.0
        mins = -lo
        d = np.float16(scale.max() / 63.0)
        dmin = np.float16(mins.max() / 63.0) if mins.max() > 0 else np.float16(0.0)
        sc = np.clip(np.round(scale / np.float32(d)), 1, 63).astype(np.uint8) if d > 0 else np.zeros(8, np.uint8)
        mn = np.clip(np.round(mins / np.float32(dmin)), 0, 63).astype(np.uint8) if dmin > 0 else np.zeros(8, np.uint8)
        eff_scale = np.float32(d) * sc.astype(np.float32)
        eff_min = np.float32(dmin) * mn.astype(np.float32)
        q = np.zeros((8, 32), dtype=np.uint8)
        for j in range(8):
            if eff_scale[j] > 0:
                q[j] = np.clip(np.round((sb[j] + eff_min[j]) / eff_scale[j]), 0, 15).astype(np.uint8)
        s = np.zeros(12, dtype=np.uint8)
        for j in range(4):
            s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6)
            s[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6)
            s[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4)
        qs = np.zeros(128, dtype=np.uint8)
        for c in range(4):
            qs[32 * c:32 * c + 32] = q[2 * c] | (q[2 * c + 1] << 4)
        out[b, 0:2] = np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)
        out[b, 2:4] = np.frombuffer(np.float16(dmin).tobytes(), dtype=np.uint8)
        out[b, 4:16] = s
        out[b, 16:] = qs
    return out.reshape(rows, -1)


def mel_resources() -> tuple[np.ndarray, np.ndarray]:
    """The Hann window and mel filterbank CrispASR's converter stores (Hark ignores both)."""
    n_fft, n_mels, sr = 400, 128, 16000
    hann = np.hanning(n_fft + 1)[:n_fft].astype(np.float32)
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    pts = hz(np.linspace(0.0, 2595.0 * np.log10(1.0 + (sr / 2.0) / 700.0), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    fb = np.zeros((n_fft // 2 + 1, n_mels), dtype=np.float32)
    for m in range(n_mels):
        lo, c, hi = pts[m], pts[m + 1], pts[m + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[:, m] = np.maximum(0.0, np.minimum(up, down)) * 2.0 / (hi - lo)
    return hann, fb


def write_gguf(path: Path, cfg_json: dict, tok_json: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Write the GGUF; return the dequantized value of every tensor under its HF name."""
    ac, tc = cfg_json["audio_config"], cfg_json["text_config"]
    w = GGUFWriter(str(path), "gemma4e2b")
    w.add_name("hark-quant-fixture")
    # The metadata keys (and defaults) of CrispASR's converter.
    u32, f32 = w.add_uint32, w.add_float32
    u32("gemma4e2b.audio.hidden_size", ac.get("hidden_size", 1024))
    u32("gemma4e2b.audio.num_layers", ac.get("num_hidden_layers", 12))
    u32("gemma4e2b.audio.num_heads", ac.get("num_attention_heads", 8))
    u32("gemma4e2b.audio.conv_kernel_size", ac.get("conv_kernel_size", 5))
    u32("gemma4e2b.audio.chunk_size", ac.get("attention_chunk_size", 12))
    u32("gemma4e2b.audio.context_left", ac.get("attention_context_left", 13))
    u32("gemma4e2b.audio.output_proj_dims", ac.get("output_proj_dims", 1536))
    f32("gemma4e2b.audio.residual_weight", ac.get("residual_weight", 0.5))
    f32("gemma4e2b.audio.attention_logit_cap", ac.get("attention_logit_cap", 50.0))
    u32("gemma4e2b.llm.hidden_size", tc.get("hidden_size", 1536))
    u32("gemma4e2b.llm.num_layers", tc.get("num_hidden_layers", 35))
    u32("gemma4e2b.llm.num_heads", tc.get("num_attention_heads", 8))
    u32("gemma4e2b.llm.num_kv_heads", tc.get("num_key_value_heads", 1))
    u32("gemma4e2b.llm.head_dim", tc.get("head_dim", 256))
    u32("gemma4e2b.llm.intermediate_size", tc.get("intermediate_size", 6144))
    u32("gemma4e2b.llm.vocab_size", tc.get("vocab_size", 262144))
    u32("gemma4e2b.llm.max_position_embeddings", tc.get("max_position_embeddings", 131072))
    u32("gemma4e2b.llm.sliding_window", tc.get("sliding_window", 512))
    f32("gemma4e2b.llm.rope_theta", tc.get("rope_theta", 10000.0))
    f32("gemma4e2b.llm.final_logit_softcapping", tc.get("final_logit_softcapping", 30.0))
    f32("gemma4e2b.llm.rms_norm_eps", tc.get("rms_norm_eps", 1e-6))
    u32("gemma4e2b.llm.hidden_size_per_layer_input", tc.get("hidden_size_per_layer_input", 256))
    u32("gemma4e2b.llm.num_kv_shared_layers", tc.get("num_kv_shared_layers", 0))
    u32("gemma4e2b.llm.global_head_dim", tc.get("global_head_dim", tc.get("head_dim", 256)))
    w.add_bool("gemma4e2b.llm.use_double_wide_mlp", tc.get("use_double_wide_mlp", False))
    w.add_bool("gemma4e2b.llm.attention_k_eq_v", tc.get("attention_k_eq_v", False))
    w.add_array("gemma4e2b.llm.layer_full_mask", [1 if t == "full_attention" else 0 for t in tc["layer_types"]])
    full_rope = (tc.get("rope_parameters") or {}).get("full_attention") or {}
    f32("gemma4e2b.llm.rope_theta_full", full_rope.get("rope_theta", 1000000.0))
    f32("gemma4e2b.llm.partial_rotary_factor", full_rope.get("partial_rotary_factor", 1.0))
    vocab = tok_json["model"]["vocab"]
    tokens = [""] * len(vocab)
    for token, idx in vocab.items():
        if idx < len(tokens):
            tokens[idx] = token
    w.add_token_list(tokens)
    hann, fb = mel_resources()
    w.add_tensor("audio.mel_window", hann, raw_dtype=T.F32)
    w.add_tensor("audio.mel_filters", fb, raw_dtype=T.F32)

    deq: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for hf in sorted(tensors):
        g = crispasr_name(hf)
        arr = tensors[hf].astype(np.float32)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        ty = gguf_type(g, arr)
        if ty == T.F32:
            stored = np.ascontiguousarray(arr)
            back = stored
        elif ty == T.F16:
            stored = np.ascontiguousarray(arr.astype(np.float16))
            back = stored.astype(np.float32)
        else:
            stored = quantize_q4_k(arr) if ty == T.Q4_K else quants.quantize(arr, ty)
            back = quants.dequantize(stored, ty).reshape(arr.shape)
            err = np.abs(back - arr).max() / max(np.abs(arr).max(), 1e-12)
            assert err < {T.Q8_0: 0.01, T.BF16: 0.01}.get(ty, 0.2), (hf, ty.name, err)
        w.add_tensor(g, stored, raw_dtype=ty)
        deq[hf] = back.reshape(tensors[hf].shape)
        counts[ty.name] = counts.get(ty.name, 0) + 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"  {path}: {len(tensors)} tensors {counts}, {path.stat().st_size} bytes")
    return deq


# ---------------------------------------------------------------------------------------------
# GPTQ / AutoRound W4A16
# ---------------------------------------------------------------------------------------------

GPTQ_LINEAR = re.compile(
    r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj"
    r"|per_layer_input_gate|per_layer_projection)\.weight$")


def gptq_pack(wt: np.ndarray):
    """Symmetric 4-bit, group 128, GPTQ v1 packing of `wt` [out, in].

    Returns (qweight i32 [in/8, out], qzeros i32 [groups, out/8], scales f16 [groups, out],
    g_idx i32 [in], dequantized f32 [out, in]). Per group and output: scale = 2·max|w| / 15,
    q = clamp(round(w / scale) + 8, 0, 15), stored zero 8 − 1 = 7 (v1);
    w' = scale · (q − 8) with the f16 scale.
    """
    out, inp = wt.shape
    groups = inp // GROUP
    g = wt.astype(np.float32).reshape(out, groups, GROUP)
    scale = (2.0 * np.abs(g).max(axis=2) / 15.0).astype(np.float16)  # [out, groups]
    scale = np.where(scale == 0, np.float16(1e-4), scale)
    s32 = scale.astype(np.float32)[:, :, None]
    q = np.clip(np.round(g / s32) + 8, 0, 15).astype(np.uint32).reshape(out, inp)
    deq = (s32 * (q.reshape(out, groups, GROUP).astype(np.float32) - 8.0)).reshape(out, inp)
    qt = q.T.reshape(inp // 8, 8, out)  # [in/8, k, out]
    qweight = np.zeros((inp // 8, out), dtype=np.uint32)
    for k in range(8):
        qweight |= qt[:, k, :] << np.uint32(4 * k)
    qzeros = np.full((groups, out // 8), 0x77777777, dtype=np.uint32)
    g_idx = (np.arange(inp) // GROUP).astype(np.int32)
    return (qweight.view(np.int32), qzeros.view(np.int32), np.ascontiguousarray(scale.T), g_idx, deq)


def check_with_auto_round(qweight, qzeros, scales, g_idx, deq) -> bool:
    """auto-round's QuantLinear (auto_gptq packing) dequantizes our packing to `deq`."""
    try:
        from auto_round_extension.torch.qlinear_torch_zp import QuantLinear
    except Exception as e:  # noqa: BLE001
        print(f"  (auto-round not importable, packing check skipped: {e})")
        return False
    out, inp = deq.shape
    layer = QuantLinear(4, GROUP, inp, out, False, g_idx=True)
    layer.qweight = torch.from_numpy(qweight.copy())
    layer.qzeros = torch.from_numpy(qzeros.copy())
    layer.scales = torch.from_numpy(scales.astype(np.float32))  # f32: the check is about packing
    layer.g_idx = torch.from_numpy(g_idx.copy())
    with torch.no_grad():
        got = layer(torch.eye(inp, dtype=torch.float32)).numpy().T
    assert np.array_equal(got, deq), np.abs(got - deq).max()
    return True


def write_gptq(dst: Path, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out: dict[str, torch.Tensor] = {}
    deq: dict[str, np.ndarray] = {}
    checked = quantized = 0
    for name in sorted(tensors):
        arr = tensors[name].astype(np.float32)
        if GPTQ_LINEAR.match(name) and arr.shape[1] % GROUP == 0 and arr.shape[0] % 32 == 0:
            qweight, qzeros, scales, g_idx, d = gptq_pack(arr)
            if checked < 3:
                checked += check_with_auto_round(qweight, qzeros, scales, g_idx, d)
            prefix = name[: -len(".weight")]
            out[f"{prefix}.qweight"] = torch.from_numpy(qweight)
            out[f"{prefix}.qzeros"] = torch.from_numpy(qzeros)
            out[f"{prefix}.scales"] = torch.from_numpy(scales)
            out[f"{prefix}.g_idx"] = torch.from_numpy(g_idx)
            deq[name] = d
            quantized += 1
        else:
            t = torch.from_numpy(arr).to(torch.bfloat16)
            out[name] = t
            deq[name] = t.to(torch.float32).numpy()
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    print(f"  {dst}: {quantized} linears GPTQ-packed ({checked} checked against auto-round), "
          f"{(dst / 'model.safetensors').stat().st_size} bytes")
    return deq


QUANTIZATION_CONFIG = {
    "quant_method": "auto-round", "packing_format": "auto_round:auto_gptq", "bits": 4, "group_size": GROUP,
    "sym": True, "data_type": "int", "act_bits": 16, "iters": 0, "autoround_version": "0.16.1",
    "block_name_to_quantize": "model.language_model.layers",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "tests" / "fixtures"))
    args = ap.parse_args()
    out = Path(args.out)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok, cfg_json, gen, processor, tensors = build_source(work)
        save_tokenizer(work, tok)
        tok_json = json.loads((work / "tokenizer.json").read_text())

        gguf_dir = out / "models" / "quant-gguf"
        if gguf_dir.exists():
            shutil.rmtree(gguf_dir)
        gguf_dir.mkdir(parents=True)
        shutil.copy(work / "tokenizer.json", gguf_dir / "tokenizer.json")
        write_side_files(gguf_dir / "hf-config", cfg_json, gen, processor)
        deq = write_gguf(gguf_dir / "model.gguf", cfg_json, tok_json, tensors)
        ref = reference_checkpoint(work, "gguf", cfg_json, gen, processor, tok, deq)
        golden(ref, tok, out / "golden" / "quant-gguf")

        gptq_dir = out / "models" / "quant-gptq"
        if gptq_dir.exists():
            shutil.rmtree(gptq_dir)
        qcfg = dict(cfg_json, quantization_config=QUANTIZATION_CONFIG, dtype="bfloat16")
        write_side_files(gptq_dir, qcfg, gen, processor, tok)
        deq = write_gptq(gptq_dir, tensors)
        ref = reference_checkpoint(work, "gptq", cfg_json, gen, processor, tok, deq)
        golden(ref, tok, out / "golden" / "quant-gptq")


if __name__ == "__main__":
    main()
