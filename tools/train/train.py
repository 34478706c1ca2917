#!/usr/bin/env python3
"""Train Hark's demonstration speech model: transformers' Gemma4ForConditionalGeneration, unchanged.

    python3 tools/train/train.py prepare   # tokenizer, seeded init, features of data/{train,test}
    python3 tools/train/train.py fit       # train (resumes from runs/<run>/ckpt.pt), log in runs/<run>/train.log

Inputs are exactly the released prompt path: the ASR prompt of the chat template with the audio
placeholder expanded (`PromptBuilder`, checked against `Gemma4Processor`), the target is the
transcript followed by `<turn|>`, and the loss covers the target tokens only.

Speed on 2 CPU cores: the audio tower's two subsampling convolutions (with their LayerNorms) keep
their seeded random initialisation and their output is computed once per clip (`prepare`). Their
128-channel first layer, over every mel bin of every frame, costs more than the rest of the model
together; frozen, the per-step cost drops about 3x. The training forward swaps the convolutions
for a lookup of that cached output and runs everything after them (input projection, conformer,
embedder, decoder) as transformers does. The exported model is the complete network and runs the
convolutions as usual.

Batches are left-padded so that all targets end at the last position; `logits_to_keep` then lets
transformers run the KV-shared decoder layers on the target positions only (they produce no K/V
other layers read), which roughly halves the decoder's cost without changing any result.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common

RUNS = common.HERE / "runs"
DATA = common.HERE / "data"


# ---------------------------------------------------------------------------------------------
# prepare: tokenizer, initial weights, cached subsampler output
# ---------------------------------------------------------------------------------------------


def subsampled(model, extractor, wav: np.ndarray) -> tuple[np.ndarray, int]:
    """The subsampling convolutions' output for one clip: [n_valid, 32*32] before input_proj_linear."""
    feats = extractor([wav], sampling_rate=common.SAMPLE_RATE, return_tensors="pt")
    x = feats["input_features"].float()
    mask = feats["input_features_mask"].bool()
    sub = model.model.audio_tower.subsample_conv_projection
    with torch.no_grad():
        h, m = sub.layer0(x.unsqueeze(1), mask)
        h, m = sub.layer1(h, m)
    b, _, t, _ = h.shape
    h = h.permute(0, 2, 3, 1).reshape(b, t, -1)[0]
    n = int(m[0].sum())
    assert bool(m[0, :n].all()), "valid frames are a prefix"
    return h[:n].numpy(), n


def prepare(run: Path, data: Path, limit: int | None, threads: int) -> None:
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    tok = common.build_tokenizer()
    tok.save_pretrained(run / "tokenizer")
    model = common.new_model(tok).eval()
    pb = common.PromptBuilder(tok)
    proc = common.processor(tok)
    extractor = proc.feature_extractor
    for split in ("train", "test"):
        entries = common.read_manifest(data / split / "manifest.jsonl")
        if limit:
            entries = entries[:limit]
        t0 = time.time()
        chunks, index = [], []
        offset = 0
        for k, e in enumerate(entries):
            wav = common.read_wav(Path(e["path"]))
            h, n = subsampled(model, extractor, wav)
            assert n == common.n_audio_tokens(len(wav)), (e["id"], n, len(wav))
            if k < 3:
                pb.check_against_processor(proc, wav, n)
            chunks.append(h.astype(np.float16))
            index.append({"id": e["id"], "offset": offset, "n_audio": n, "target": pb.target(e["text"]),
                          "text": e["text"]})
            offset += n
            if (k + 1) % 1000 == 0:
                print(f"  {split}: {k + 1}/{len(entries)} clips, {time.time() - t0:.0f} s", flush=True)
        np.save(run / f"feats_{split}.npy", np.concatenate(chunks))
        (run / f"index_{split}.json").write_text(json.dumps(index))
        print(f"{split}: {len(index)} clips, {offset} audio frames, {time.time() - t0:.0f} s", flush=True)
    (run / "prompt.json").write_text(json.dumps({"head": pb.head, "tail": pb.tail}))
    feats = np.load(run / "feats_train.npy", mmap_mode="r")
    sample = np.random.default_rng(common.MODEL_SEED).choice(len(feats), min(len(feats), 60_000), replace=False)
    proj = model.model.audio_tower.subsample_conv_projection.input_proj_linear
    with torch.no_grad():
        proj.weight.copy_(common.whitening_projection(feats[np.sort(sample)], proj.weight.shape[0]))
    torch.save(model.state_dict(), run / "init.pt")


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


class Split:
    def __init__(self, run: Path, name: str):
        self.feats = np.load(run / f"feats_{name}.npy", mmap_mode="r")
        self.index = json.loads((run / f"index_{name}.json").read_text())

    def __len__(self) -> int:
        return len(self.index)


def cached_subsampler(model) -> None:
    """Training-time forward of the subsampler: its convolutions' output comes precomputed."""
    sub = model.model.audio_tower.subsample_conv_projection

    def forward(x, mask=None):
        return sub.input_proj_linear(x), mask

    sub.forward = forward


def collate(split: Split, items: list[int], pb: common.PromptBuilder, pad_id: int, time_mask: float = 0.0,
            rng: np.random.Generator | None = None) -> dict:
    rows = [split.index[i] for i in items]
    n_max = max(r["n_audio"] for r in rows)
    feats = torch.zeros(len(rows), n_max, split.feats.shape[1])
    fmask = torch.zeros(len(rows), n_max, dtype=torch.bool)
    seqs, tgt_lens = [], []
    for b, r in enumerate(rows):
        n = r["n_audio"]
        x = torch.from_numpy(np.asarray(split.feats[r["offset"]:r["offset"] + n], dtype=np.float32))
        if time_mask > 0 and rng is not None:
            # SpecAugment-style: blank a few short stretches of frames with the clip's mean frame
            # (an all-zero frame gives NaN gradients in the conformer).
            mean = x.mean(0)
            for _ in range(int(rng.integers(0, 3))):
                w = int(rng.integers(1, 4))
                s = int(rng.integers(0, max(n - w, 1)))
                x[s:s + w] = mean
        feats[b, :n] = x
        fmask[b, :n] = True
        seqs.append(pb.prompt(n) + r["target"])
        tgt_lens.append(len(r["target"]))
    length = max(len(s) for s in seqs)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros(len(rows), length, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, length - len(s):] = torch.tensor(s)
        attn[b, length - len(s):] = 1
    keep = max(tgt_lens) + 1
    words = [r["target"][:-1] for r in rows]  # transcript tokens, without <turn|>
    ctc_targets = torch.zeros(len(rows), max(len(w) for w in words), dtype=torch.long)
    for b, w in enumerate(words):
        ctc_targets[b, :len(w)] = torch.tensor(w, dtype=torch.long)
    # Logit j of the kept window predicts token length-keep+1+j; it is a target token iff it lies in
    # the last tgt_len positions.
    labels = ids[:, length - keep + 1:].clone()
    pos = torch.arange(length - keep + 1, length)
    for b, n in enumerate(tgt_lens):
        labels[b, pos < length - n] = -100
    return {"input_ids": ids, "attention_mask": attn, "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
            "input_features": feats, "input_features_mask": fmask, "keep": keep, "labels": labels,
            "ctc_targets": ctc_targets, "ctc_lengths": torch.tensor([len(w) for w in words])}


def forward_loss(model, batch: dict, ctc_head: torch.nn.Module | None = None,
                 ctc_weight: float = 0.0) -> tuple[torch.Tensor, int, int, float]:
    """Cross-entropy on the target tokens (+ the auxiliary CTC loss when a head is given)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                position_ids=batch["position_ids"], input_features=batch["input_features"],
                input_features_mask=batch["input_features_mask"], use_cache=False, logits_to_keep=batch["keep"])
    logits = out.logits[:, :-1].float()
    labels = batch["labels"]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    valid = labels != -100
    correct = int(((logits.argmax(-1) == labels) & valid).sum())
    ctc = 0.0
    if ctc_head is not None and ctc_weight > 0:
        ctc_loss = ctc_on_audio_tokens(out.audio_hidden_states, batch, ctc_head)
        ctc = float(ctc_loss.detach())
        loss = loss + ctc_weight * ctc_loss
    return loss, correct, int(valid.sum()), ctc


def ctc_on_audio_tokens(audio_tokens: torch.Tensor, batch: dict, head: torch.nn.Module) -> torch.Tensor:
    """Auxiliary CTC over the transcript tokens, read from the audio soft tokens the decoder receives.

    Training only (hybrid CTC/attention training): it teaches the audio tower to make its tokens
    word-discriminative early, which the decoder's attention otherwise has to discover from scratch.
    The head is not part of the exported model. Blank = the head's last class.
    """
    n_audio = batch["input_features_mask"].sum(-1)
    per_clip = torch.split(audio_tokens, n_audio.tolist())
    log_probs = torch.nn.utils.rnn.pad_sequence([head(x) for x in per_clip]).float().log_softmax(-1)
    targets = batch["ctc_targets"]
    return F.ctc_loss(log_probs, targets, n_audio, batch["ctc_lengths"], blank=head.out_features - 1,
                      zero_infinity=True)


def batches_by_length(split: Split, frames_per_batch: int, max_batch: int, rng: np.random.Generator,
                      ascending: bool = False) -> list[list[int]]:
    """Length-bucketed batches (little padding), in random order, or shortest first
    (SortaGrad: short clips first help CTC past its initial all-blank plateau)."""
    order = np.argsort([r["n_audio"] + rng.random() * 8 for r in split.index], kind="stable")
    out, cur = [], []
    for i in order:
        cur.append(int(i))
        longest = max(split.index[j]["n_audio"] for j in cur)
        if len(cur) >= max_batch or longest * len(cur) >= frames_per_batch:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    if not ascending:
        rng.shuffle(out)
    return out


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(total - warmup, 1)
    return peak * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


@torch.no_grad()
def evaluate_tf(model, split: Split, pb, pad_id: int, n: int) -> tuple[float, float]:
    """Teacher-forced loss and token accuracy on the first n clips."""
    model.eval()
    tot_loss, tot_correct, tot = 0.0, 0, 0
    items = list(range(min(n, len(split))))
    for k in range(0, len(items), 24):
        batch = collate(split, items[k:k + 24], pb, pad_id)
        loss, correct, count, _ = forward_loss(model, batch)
        tot_loss += float(loss) * count
        tot_correct += correct
        tot += count
    model.train()
    return tot_loss / tot, tot_correct / tot


@torch.no_grad()
def evaluate_greedy(model, split: Split, pb, tok, n: int) -> float:
    """Greedy WER on the first n clips (cached subsampler output, batched generate)."""
    model.eval()
    errors = words = 0
    pad_id = tok.pad_token_id
    eos = [tok.convert_tokens_to_ids(t) for t in ("<eos>", "<turn|>", "<|tool_response>")]
    items = list(range(min(n, len(split))))
    for k in range(0, len(items), 16):
        chunk = items[k:k + 16]
        rows = [split.index[i] for i in chunk]
        batch = collate(split, chunk, pb, pad_id)
        # Drop the targets: prompt only, left-padded.
        seqs = [pb.prompt(r["n_audio"]) for r in rows]
        length = max(len(s) for s in seqs)
        ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for b, s in enumerate(seqs):
            ids[b, length - len(s):] = torch.tensor(s)
            attn[b, length - len(s):] = 1
        gen = model.generate(input_ids=ids, attention_mask=attn, input_features=batch["input_features"],
                             input_features_mask=batch["input_features_mask"], max_new_tokens=24, do_sample=False,
                             eos_token_id=eos, pad_token_id=pad_id, top_k=None, top_p=None, temperature=None)
        for b, r in enumerate(rows):
            hyp = tok.decode(gen[b, length:], skip_special_tokens=True)
            ref = common.normalise(r["text"])
            errors += common.edit_distance(ref, common.normalise(hyp))
            words += len(ref)
    model.train()
    return errors / max(words, 1)


def fit(run: Path, args) -> None:
    torch.set_num_threads(args.threads)
    tok = common.build_tokenizer()
    pb = common.PromptBuilder(tok)
    pad_id = tok.pad_token_id
    assert json.loads((run / "prompt.json").read_text()) == {"head": pb.head, "tail": pb.tail}, "stale prepare"
    train, test = Split(run, "train"), Split(run, "test")
    model = common.new_model(tok)
    model.load_state_dict(torch.load(run / "init.pt"))
    cached_subsampler(model)
    # The convolutions (and their LayerNorms) stay as initialised: their output is cached.
    frozen = ("subsample_conv_projection.layer0.", "subsample_conv_projection.layer1.")
    params = [p for n, p in model.named_parameters() if not any(f in n for f in frozen)]
    for n, p in model.named_parameters():
        if any(f in n for f in frozen):
            p.requires_grad_(False)
    ctc_head = None
    if args.ctc_weight > 0:
        torch.manual_seed(args.seed)
        ctc_head = torch.nn.Linear(model.config.text_config.hidden_size, len(tok) + 1)
        params += list(ctc_head.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    step, epoch, pos = 0, 0, 0
    ckpt = run / "ckpt.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        if ctc_head is not None:
            ctc_head.load_state_dict(state["ctc_head"])
        opt.load_state_dict(state["opt"])
        step, epoch, pos = state["step"], state["epoch"], state["pos"]
        print(f"resumed at step {step} (epoch {epoch}, batch {pos})", flush=True)
    model.train()
    log = open(run / "train.log", "a")

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"fit: {len(train)} train / {len(test)} test clips, {args.steps} steps, lr {args.lr}, "
        f"frames/batch {args.frames_per_batch}, threads {args.threads}")
    t_start = time.time()
    window_loss, window_correct, window_count, window_t = 0.0, 0, 0, time.time()
    window_ctc = 0.0
    while step < args.steps:
        epoch_rng = np.random.default_rng([args.seed, epoch])
        batches = batches_by_length(train, args.frames_per_batch, args.max_batch, epoch_rng,
                                    ascending=epoch == 0 and args.sortagrad)
        aug_rng = np.random.default_rng([args.seed, epoch, 1])
        while pos < len(batches) and step < args.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
            batch = collate(train, batches[pos], pb, pad_id, args.time_mask, aug_rng)
            loss, correct, count, ctc = forward_loss(model, batch, ctc_head, args.ctc_weight)
            window_ctc += ctc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            pos += 1
            window_loss += float(loss.detach()) * count
            window_correct += correct
            window_count += count
            if step % args.log_every == 0:
                dt = time.time() - window_t
                say(f"step {step} epoch {epoch} loss {window_loss / window_count:.4f} "
                    f"acc {window_correct / window_count:.4f} ctc {window_ctc / args.log_every:.3f} lr {opt.param_groups[0]['lr']:.2e} "
                    f"{dt / args.log_every:.2f} s/step")
                window_loss, window_correct, window_count, window_t = 0.0, 0, 0, time.time()
                window_ctc = 0.0
            if step % args.ckpt_every == 0 or step == args.steps:
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "epoch": epoch,
                            "pos": pos, "ctc_head": ctc_head.state_dict() if ctc_head is not None else None}, tmp)
                os.replace(tmp, ckpt)
            if step % args.eval_every == 0 or step == args.steps:
                vl, va = evaluate_tf(model, test, pb, pad_id, args.eval_clips)
                say(f"eval step {step}: test loss {vl:.4f} token acc {va:.4f}")
        if pos >= len(batches):
            epoch += 1
            pos = 0
    wer = evaluate_greedy(model, test, pb, tok, args.eval_clips)
    say(f"done: {step} steps, {(time.time() - t_start) / 60:.1f} min this session; greedy test WER "
        f"(first {args.eval_clips} clips, cached features) {wer * 100:.2f} %")
    torch.save(model.state_dict(), run / "final.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prepare", "fit"])
    ap.add_argument("--run", default="demo")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=None, help="prepare: only the first N clips of each split")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--frames-per-batch", type=int, default=1600, help="audio tokens per batch (25 per second)")
    ap.add_argument("--max-batch", type=int, default=48)
    ap.add_argument("--time-mask", type=float, default=1.0)
    ap.add_argument("--ctc-weight", type=float, default=0.3, help="auxiliary CTC loss on the audio tokens")
    ap.add_argument("--sortagrad", action=argparse.BooleanOptionalAction, default=True,
                    help="first epoch shortest clips first")
    ap.add_argument("--threads", type=int, default=1, help="1 is much faster than 2 when other jobs share the cores")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-clips", type=int, default=150)
    args = ap.parse_args()
    run = RUNS / args.run
    if args.stage == "prepare":
        prepare(run, Path(args.data), args.limit, args.threads)
    else:
        torch.manual_seed(args.seed)
        fit(run, args)


if __name__ == "__main__":
    main()
