#!/usr/bin/env python3
"""Do Hark and transformers transcribe a test set the same way?

    python3 tools/train/eval.py --out /tmp/torch.json
    hark eval --model model/demo-model --manifest tools/train/data/test/manifest.jsonl --json > /tmp/hark.jsonl
    python3 tools/train/compare.py /tmp/torch.json /tmp/hark.jsonl [--margin 0.1]

Compares the offline hypotheses clip by clip (after WER normalisation). Greedy decoding is only
reproducible where the reference's top-1/top-2 logit gap is clear: a clip whose smallest margin is
below `--margin` may legitimately differ (bf16 weights, different summation order), every other
clip must match. Exit status 1 when a clear-margin clip differs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import common


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("torch_json", help="eval.py --out file")
    ap.add_argument("hark_jsonl", help="hark eval --json output")
    ap.add_argument("--margin", type=float, default=0.1, help="smallest top-1/top-2 gap that counts as clear")
    args = ap.parse_args()

    torch_clips = {c["id"]: c for c in json.loads(Path(args.torch_json).read_text())["clips"]}
    hark_clips, hark_summary = {}, None
    for line in Path(args.hark_jsonl).read_text().splitlines():
        obj = json.loads(line)
        if "id" in obj:
            hark_clips[obj["id"]] = obj
        elif "offline_wer" in obj:
            hark_summary = obj
    common_ids = [i for i in torch_clips if i in hark_clips]
    if not common_ids:
        sys.exit("no clip ids in common")

    same = clear = clear_same = 0
    differing = []
    for i in common_ids:
        t, h = torch_clips[i], hark_clips[i]
        equal = common.normalise(t["hyp"]) == common.normalise(h["offline"])
        is_clear = t["min_margin"] >= args.margin
        same += equal
        clear += is_clear
        clear_same += equal and is_clear
        if not equal:
            differing.append((i, t["min_margin"], t["hyp"], h["offline"]))
    print(f"{len(common_ids)} clips: identical hypotheses on {same}; "
          f"{clear} with every greedy margin >= {args.margin}, identical on {clear_same}")
    if hark_summary:
        torch_wer = sum(torch_clips[i]["errors"] for i in common_ids) / max(1, sum(torch_clips[i]["words"] for i in common_ids))
        print(f"WER: transformers {100 * torch_wer:.2f} %, Hark offline {100 * hark_summary['offline_wer']:.2f} %"
              + (f", Hark streaming {100 * hark_summary['streaming_wer']:.2f} %" if hark_summary.get("streaming_wer") is not None else ""))
    for i, m, th, hh in differing:
        print(f"  {i} (min margin {m:.3f}): transformers {th!r} | hark {hh!r}")
    if clear_same < clear:
        sys.exit(1)


if __name__ == "__main__":
    main()
