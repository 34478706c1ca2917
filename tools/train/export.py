#!/usr/bin/env python3
"""Export the trained demonstration model in the released Gemma 4 layout.

    python3 tools/train/export.py [--run demo] [--out model/demo-model]

Writes config.json, model.safetensors (bfloat16 like the release, or float32), generation_config.json,
tokenizer.json, tokenizer_config.json and processor_config.json, as google/gemma-4-E2B-it ships
them, plus a README.md that says what the model is (and is not).

The audio tower's ClippableLinear bounds are calibrated here: each layer's input and output range
over training clips, widened by 10 % of its span. In-distribution audio never reaches them (the
export check below verifies the clamped model's outputs), out-of-distribution input gets clamped
as in E2B, and Hark's clamp code runs on real, finite bounds.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from transformers import Gemma4AudioFeatureExtractor, Gemma4ForConditionalGeneration

import common
import train

RELEASED_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "processor_config.json", "model.safetensors", "README.md"}

README = """# hark-demo-en — Hark's embedded demonstration model

A **small demonstration model**, not a general speech recogniser. It is Gemma 4's speech path —
`Gemma4ForConditionalGeneration` with the USM-style conformer audio tower and the Gemma 4 decoder,
architecture unchanged — at toy dimensions ({params:.1f} M parameters, {dtype} weights), trained
from scratch by `tools/train/` on synthetic English speech: espeak-ng voices reading sentences
over a {n_words}-word vocabulary, digits included (`tools/train/vocabulary.txt`). Hark embeds it so
that a fresh build transcribes offline with no download, and its tests can assert real words.

It understands only that vocabulary, spoken clearly; anything else comes out as the nearest
words it knows. For real transcription use the real model:

```sh
huggingface-cli download google/gemma-4-E2B-it
hark transcribe --model google/gemma-4-E2B-it meeting.wav
harkd --model google/gemma-4-E2B-it
```

Same files and prompt path as `google/gemma-4-E2B-it` (config.json, model.safetensors,
tokenizer.json with Gemma 4's special tokens, generation_config.json, the official ASR
instruction). Dimensions: audio tower {a_layers} conformer layers of width {a_hidden}
(subsampling channels {a_conv}), decoder {t_layers} layers of width {t_hidden} ({layer_types}),
{kv_shared} KV-shared layers with double-wide MLPs, vocabulary {vocab} tokens.
Word error rates and how to retrain: `tools/train/README.md`.
"""


@torch.no_grad()
def calibrate_clip_bounds(model, split: train.Split, pb, pad_id: int, n_clips: int) -> dict[str, list[float]]:
    ranges: dict[str, list[float]] = {}
    hooks = []
    for name, mod in model.named_modules():
        if hasattr(mod, "input_min") and hasattr(mod, "linear"):
            def hook(m, inp, out, name=name):
                x, y = inp[0], out
                r = ranges.setdefault(name, [float("inf"), float("-inf"), float("inf"), float("-inf")])
                r[0], r[1] = min(r[0], float(x.min())), max(r[1], float(x.max()))
                r[2], r[3] = min(r[2], float(y.min())), max(r[3], float(y.max()))
            hooks.append(mod.register_forward_hook(hook))
    # One clip at a time: no padding rows, so the ranges are those of real audio only.
    for k in range(0, min(n_clips, len(split)), 1):
        batch = train.collate(split, [k], pb, pad_id, len(pb.tok))
        model.model.get_audio_features(batch["input_features"], batch["input_features_mask"], return_dict=True)
    for h in hooks:
        h.remove()
    bounds = {}
    for name, (lo_in, hi_in, lo_out, hi_out) in ranges.items():
        pad_in, pad_out = 0.1 * (hi_in - lo_in), 0.1 * (hi_out - lo_out)
        bounds[name] = [lo_in - pad_in, hi_in + pad_in, lo_out - pad_out, hi_out + pad_out]
    return bounds


def export(run: Path, out: Path, weights: str, calib_clips: int, dtype: str) -> None:
    torch.set_num_threads(1)
    tok = common.build_tokenizer()
    pb = common.PromptBuilder(tok)
    state = torch.load(run / weights, weights_only=False)
    state = state.get("model", state)
    model = common.new_model(tok)
    model.load_state_dict(state)
    model.eval()
    n_params = sum(p.numel() for p in model.parameters())

    # Calibrate on a copy fed the cached subsampler output (the same conformer inputs as the full path).
    probe = common.new_model(tok)
    probe.load_state_dict(state)
    probe.eval()
    train.cached_subsampler(probe)
    bounds = calibrate_clip_bounds(probe, train.Split(run, "train"), pb, tok.pad_token_id, calib_clips)
    for name, mod in model.named_modules():
        if name in bounds:
            lo_in, hi_in, lo_out, hi_out = bounds[name]
            mod.input_min.fill_(lo_in)
            mod.input_max.fill_(hi_in)
            mod.output_min.fill_(lo_out)
            mod.output_max.fill_(hi_out)

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(out, safe_serialization=True)
    cfg = json.loads((out / "config.json").read_text())
    # Released spellings: `eoa_token_id` (HF's class says eoa_token_index) and the flat
    # `global_head_dim` instead of `per_layer_config`.
    cfg["eoa_token_id"] = cfg.pop("eoa_token_index")
    tc = cfg["text_config"]
    tc.pop("per_layer_config", None)
    tc["global_head_dim"] = common.TEXT_DIMS["global_head_dim"]
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    common.generation_config(tok).save_pretrained(out)
    tok.save_pretrained(out)
    (out / "processor_config.json").write_text(json.dumps({
        "processor_class": "Gemma4Processor", "audio_seq_length": 750, "audio_ms_per_token": 40,
        "feature_extractor": json.loads(Gemma4AudioFeatureExtractor().to_json_string()),
    }, indent=2, sort_keys=True) + "\n")
    a, t = cfg["audio_config"], cfg["text_config"]
    kinds = {k: t["layer_types"].count(k) for k in dict.fromkeys(t["layer_types"])}
    (out / "README.md").write_text(README.format(
        params=n_params / 1e6, dtype=dtype, n_words=len(common.gen_data.all_words(common.gen_data.load_vocabulary())),
        a_layers=a["num_hidden_layers"], a_hidden=a["hidden_size"], a_conv=a["subsampling_conv_channels"],
        t_layers=t["num_hidden_layers"], t_hidden=t["hidden_size"],
        layer_types=", ".join(f"{n} {k.replace('_attention', '')}" for k, n in kinds.items()),
        kv_shared=t["num_kv_shared_layers"], vocab=t["vocab_size"]))
    for extra in out.iterdir():
        if extra.name not in RELEASED_FILES:
            extra.unlink()

    # The reloaded checkpoint must be the trained network, weights and config alike.
    reloaded = Gemma4ForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    ref_state = model.state_dict()
    for k, v in reloaded.state_dict().items():
        if k in ref_state:
            assert torch.equal(v, ref_state[k].float()), f"{k} changed on reload"
    assert reloaded.config.text_config.layer_types == model.config.text_config.layer_types
    assert reloaded.config.text_config.num_kv_shared_layers == model.config.text_config.num_kv_shared_layers
    size = sum(f.stat().st_size for f in out.iterdir())
    print(f"exported {out} ({size / 1e6:.2f} MB); clip bounds calibrated on {calib_clips} clips for "
          f"{len(bounds)} ClippableLinears")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="demo")
    ap.add_argument("--weights", default="final.pt", help="final.pt, or ckpt.pt for the last checkpoint")
    ap.add_argument("--out", default=str(common.REPO / "model" / "demo-model"))
    ap.add_argument("--calib-clips", type=int, default=400)
    ap.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    args = ap.parse_args()
    export(train.RUNS / args.run, Path(args.out), args.weights, args.calib_clips, args.dtype)


if __name__ == "__main__":
    main()
