#!/usr/bin/env python3
"""Word error rate of an exported model on a manifest, through transformers' own released path.

    python3 tools/train/eval.py [--model model/demo-model] [--manifest tools/train/data/test/manifest.jsonl]

Per clip: Gemma4Processor (feature extractor + the chat-template ASR prompt with the audio placeholder
expanded), Gemma4ForConditionalGeneration.from_pretrained(model) in float32, greedy `generate`
until a stop id of generation_config.json. WER = word edits / reference words after lower-casing and
stripping punctuation. Also reports, per clip, the smallest top-1/top-2 logit gap over the greedy
steps (how safely another implementation reproduces the same greedy tokens).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, Gemma4ForConditionalGeneration, GenerationConfig

import common


def transcribe(model, proc, tok, gen_cfg, wav, max_new_tokens: int = 48) -> tuple[str, list[float], list[int]]:
    inputs = proc(text=common.asr_prompt_text(tok.audio_token), audio=[wav], return_tensors="pt")
    with torch.no_grad():
        g = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, eos_token_id=gen_cfg.eos_token_id,
                           pad_token_id=gen_cfg.pad_token_id, top_k=None, top_p=None, temperature=None)
    new = g.sequences[0, inputs["input_ids"].shape[1]:]
    margins = []
    for scores in g.scores:
        top2 = torch.topk(scores[0].float(), 2).values
        margins.append(float(top2[0] - top2[1]))
    return tok.decode(new, skip_special_tokens=True), margins, new.tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(common.REPO / "model" / "demo-model"))
    ap.add_argument("--manifest", default=str(common.HERE / "data" / "test" / "manifest.jsonl"))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write per-clip results as JSON here")
    ap.add_argument("--show", type=int, default=8, help="print this many transcripts")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = Gemma4ForConditionalGeneration.from_pretrained(args.model, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(args.model)
    proc = common.processor(tok)
    gen_cfg = GenerationConfig.from_pretrained(args.model)
    entries = common.read_manifest(Path(args.manifest))[: args.limit]

    t0 = time.time()
    results = []
    errors = words = 0
    by_cond: dict[str, list[int]] = {}
    for k, e in enumerate(entries):
        wav = common.read_wav(Path(e["path"]))
        hyp, margins, ids = transcribe(model, proc, tok, gen_cfg, wav)
        ref_w, hyp_w = common.normalise(e["text"]), common.normalise(hyp)
        err = common.edit_distance(ref_w, hyp_w)
        errors += err
        words += len(ref_w)
        cond = "noisy" if e.get("noise") else ("reverb" if e.get("reverb") else "clean")
        acc = by_cond.setdefault(cond, [0, 0])
        acc[0] += err
        acc[1] += len(ref_w)
        results.append({"id": e["id"], "ref": e["text"], "hyp": hyp, "errors": err, "words": len(ref_w),
                        "min_margin": min(margins), "ids": ids, "voice": e.get("voice")})
        if k < args.show:
            print(f"{e['id']} [{e.get('voice')}] ref: {e['text']!r}\n{'':>{len(e['id'])}} hyp: {hyp!r} "
                  f"(min margin {min(margins):.3f})", flush=True)
    elapsed = time.time() - t0
    mins = [r["min_margin"] for r in results]
    summary = {
        "model": args.model,
        "manifest": args.manifest,
        "clips": len(results),
        "words": words,
        "wer": errors / max(words, 1),
        "wer_by_condition": {c: e / max(w, 1) for c, (e, w) in sorted(by_cond.items())},
        "sentence_error_rate": sum(r["errors"] > 0 for r in results) / max(len(results), 1),
        "min_margin": {"min": min(mins), "median": statistics.median(mins),
                       "below_0.1": sum(m < 0.1 for m in mins), "below_0.5": sum(m < 0.5 for m in mins)},
        "seconds": round(elapsed, 1),
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"summary": summary, "clips": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
