#!/usr/bin/env python3
"""Export the trained demonstration model in the released Gemma 4 layout.

    python3 tools/train/export.py [--run demo] [--out model/demo-model]

Writes config.json, model.safetensors (float32), generation_config.json, tokenizer.json,
tokenizer_config.json and processor_config.json, as google/gemma-4-E2B-it ships them.

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
                  "processor_config.json", "model.safetensors"}


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


def export(run: Path, out: Path, weights: str, calib_clips: int) -> None:
    torch.set_num_threads(1)
    tok = common.build_tokenizer()
    pb = common.PromptBuilder(tok)
    state = torch.load(run / weights, weights_only=False)
    state = state.get("model", state)
    model = common.new_model(tok)
    model.load_state_dict(state)
    model.eval()

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
    for extra in out.iterdir():
        if extra.name not in RELEASED_FILES:
            extra.unlink()

    # The reloaded checkpoint must be the trained network, weights and config alike.
    reloaded = Gemma4ForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    ref_state = model.state_dict()
    for k, v in reloaded.state_dict().items():
        if k in ref_state:
            assert torch.equal(v, ref_state[k]), f"{k} changed on reload"
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
    args = ap.parse_args()
    export(train.RUNS / args.run, Path(args.out), args.weights, args.calib_clips)


if __name__ == "__main__":
    main()
