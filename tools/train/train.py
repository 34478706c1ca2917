#!/usr/bin/env python3
"""Train Hark's demonstration speech model: transformers' Gemma4ForConditionalGeneration, unchanged.

    python3 tools/train/train.py prepare   # tokenizer, seeded init, log-mel features and alignment targets
    python3 tools/train/train.py fit       # train (resumes from runs/<run>/ckpt.pt), log in runs/<run>/train.log

Inputs are exactly the released prompt path: the ASR prompt of the chat template with the audio
placeholder expanded (`PromptBuilder`, checked against `Gemma4Processor`), Gemma4AudioFeatureExtractor's
log-mel features, and the transcript followed by `<turn|>` as the target; the decoder loss covers
the target tokens only.

The subsampler's two convolutions are initialised from data and frozen (`common.subsampler_pca_init`:
filters in ± pairs along the principal components of 3×3 mel patches, then of layer-0 output
patches); `prepare` runs them once over every clip and caches their output (f16), so training steps
start at `input_proj_linear`. Everything after it — projection, conformer layers, audio embedder,
decoder — trains, from a variance-preserving init (`common.variance_preserving_init`; transformers'
0.02 init gave flat logits and long plateaus at these widths).

What makes it train in an hour or two on two CPU cores instead of stalling (earlier attempts with
the decoder loss plus CTC sat on the language-model prior and the all-blank CTC plateau for
thousands of steps): alignment targets. gen_data.py records where espeak-ng put every word and
phoneme, so each audio soft token (40 ms) gets frame-level labels, read by four small
training-only heads from the very embeddings the decoder receives:

* `phone`: the phoneme sounding at every position (dense, easy, shapes the tower first);
* `spike`: the transcript token at the audio token just after its word ends (blank elsewhere): the
  causal tower learns to say "word w just ended" where it has heard all of w;
* `previous`: at those same positions, the transcript token before it (or a start symbol): the
  decoder, having just written token t, finds its next token by one content match (the position
  whose "previous" is t) instead of discovering the alignment from scratch;
* `word`: the word being spoken at every position.

The heads are dropped at export; the model is the unchanged Gemma 4 architecture. For the first
`--encoder-steps` steps only the audio path and the heads run (no decoder: cheaper steps), then
everything trains together on the decoder loss plus the (down-weighted) frame losses. A share of
clips (`--truncate`) is cut short with only the completely heard words as target, the situation
of Hark's streaming engine mid-utterance; SpecAugment-style masks on the cached features help the
unseen test voices.

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
TOKEN_SECONDS = 0.04  # one audio soft token per 40 ms (docs/model.md §1.5)
SUBSAMPLER_INIT_CLIPS = 200
N_FREQ = 32  # frequency positions after the two stride-2 convolutions over 128 mel bins


# ---------------------------------------------------------------------------------------------
# Alignment targets
# ---------------------------------------------------------------------------------------------


def word_tokens(tok, text: str) -> list[list[int]]:
    """The transcript's token ids grouped by word; their concatenation is exactly tok(text)."""
    words = text.split(" ")
    groups = [tok(("" if i == 0 else " ") + w, add_special_tokens=False)["input_ids"] for i, w in enumerate(words)]
    whole = tok(text, add_special_tokens=False)["input_ids"]
    if [t for g in groups for t in g] != whole:
        raise ValueError(f"word-wise tokenisation differs from the sentence's: {text!r}")
    return groups


def spike_positions(groups: list[list[int]], ends: list[float], n_audio: int) -> list[int] | None:
    """Audio-token index of every transcript token: a word's tokens sit on the tokens just after the
    word ends (token k has heard audio up to (k+1)*40 ms; one more token of margin), strictly
    increasing, inside the clip. None when the clip is too short to hold them all."""
    desired = []
    for g, end in zip(groups, ends):
        last = math.ceil(end / TOKEN_SECONDS - 1e-6)
        desired += [last - (len(g) - 1 - j) for j in range(len(g))]
    pos: list[int] = []
    for d in desired:
        pos.append(max(d, pos[-1] + 1 if pos else 0))
    for j in range(len(pos) - 1, -1, -1):
        pos[j] = min(pos[j], n_audio - 1 - (len(pos) - 1 - j))
    if not pos or pos[0] < 0 or any(b <= a for a, b in zip(pos, pos[1:])):
        return None
    return pos


def is_pause(phone: str) -> bool:
    return phone.startswith("_") or phone in ("", ";")


def phone_inventory(entries: list[dict]) -> list[str]:
    """espeak-ng's phoneme mnemonics seen in the training manifest, most frequent first; class 0 is
    silence (pauses and anything before the first phoneme)."""
    counts: dict[str, int] = {}
    for e in entries:
        for name, _ in e["phones"]:
            if not is_pause(name):
                counts[name] = counts.get(name, 0) + 1
    return ["<sil>"] + sorted(counts, key=lambda n: (-counts[n], n))


def phone_labels(phones: list, inventory: dict[str, int], n_audio: int) -> list[int]:
    """The phoneme sounding at the centre of each audio token (0 = silence or unknown)."""
    labels = []
    j = -1
    for k in range(n_audio):
        t = (k + 0.5) * TOKEN_SECONDS
        while j + 1 < len(phones) and phones[j + 1][1] <= t:
            j += 1
        labels.append(0 if j < 0 or is_pause(phones[j][0]) else inventory.get(phones[j][0], 0))
    return labels


def word_spans(groups: list[list[int]], words: list[list[float]], n_audio: int) -> list[list[int]]:
    """[first token, last token + 1, label] per word: the audio tokens whose centre lies in the word."""
    spans = []
    for g, (start, end) in zip(groups, words):
        a = max(0, min(n_audio, round(start / TOKEN_SECONDS)))
        b = max(a, min(n_audio, round(end / TOKEN_SECONDS)))
        spans.append([a, b, g[0]])
    return spans


# ---------------------------------------------------------------------------------------------
# prepare: tokenizer, frozen subsampler output, targets
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def subsampled(sub, feats) -> np.ndarray:
    """The subsampling convolutions' output for one clip: [n_valid, freq*channels], the input of
    input_proj_linear."""
    x = torch.from_numpy(feats["input_features"]).float()
    mask = torch.from_numpy(feats["input_features_mask"]).bool()
    h, m = sub.layer0(x.unsqueeze(1), mask)
    h, m = sub.layer1(h, m)
    b, _, t, _ = h.shape
    h = h.permute(0, 2, 3, 1).reshape(b, t, -1)[0]
    n = int(m[0].sum())
    assert bool(m[0, :n].all()), "valid frames are a prefix"
    return h[:n].numpy()


def load_exported(model, directory: Path) -> None:
    """Start from an exported model's weights (a previous session's result): everything but the
    ClippableLinear bounds, which export calibrates and training keeps infinite."""
    from safetensors.torch import load_file

    bounds = ("input_min", "input_max", "output_min", "output_max")
    state = {k: v.float() for k, v in load_file(str(Path(directory) / "model.safetensors")).items()
             if not k.endswith(bounds)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(bounds)]
    if unexpected or [k for k in missing if "lm_head" not in k]:
        raise SystemExit(f"{directory}: does not match this model (missing {missing[:5]}, unexpected {unexpected[:5]})")


def prepare(run: Path, data: Path, splits: list[str], limit: int | None, threads: int, reuse_features: bool = False,
            init_from: Path | None = None) -> None:
    run.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(threads)
    train_entries = common.read_manifest(data / "train" / "manifest.jsonl")
    phones = phone_inventory(train_entries)
    (run / "phones.json").write_text(json.dumps(phones))
    inventory = {name: i for i, name in enumerate(phones)}
    tok = common.build_tokenizer()
    tok.save_pretrained(run / "tokenizer")
    pb = common.PromptBuilder(tok)
    proc = common.processor(tok)
    extractor = proc.feature_extractor
    model = common.new_model(tok)
    if init_from is not None:
        load_exported(model, init_from)
    sub = model.model.audio_tower.subsample_conv_projection.eval()
    if reuse_features:
        sub.load_state_dict(torch.load(run / "subsampler.pt"))
    elif init_from is not None:
        torch.save(sub.state_dict(), run / "subsampler.pt")
    else:
        calib = []
        for e in train_entries[:SUBSAMPLER_INIT_CLIPS]:
            f = extractor([common.read_wav(Path(e["path"]))], sampling_rate=common.SAMPLE_RATE, return_tensors="pt")
            calib.append((f["input_features"].float(), f["input_features_mask"].bool()))
        kept = common.subsampler_pca_init(sub, calib)
        torch.save(sub.state_dict(), run / "subsampler.pt")
        print(f"subsampler: PCA init on {len(calib)} clips, layer1 keeps {kept * 100:.0f} % of the variance", flush=True)
    for split in splits:
        entries = common.read_manifest(data / split / "manifest.jsonl")
        if limit:
            entries = entries[:limit]
        t0 = time.time()
        chunks, index = [], []
        offset = unaligned = 0
        old = None
        if reuse_features and (run / f"sub_{split}.npy").exists():
            # Only the targets changed (or another split is added): keep the (expensive) cached
            # subsampler output.
            old = {r["id"]: r for r in json.loads((run / f"index_{split}.json").read_text())}
            if [r for r in old] != [e["id"] for e in entries]:
                raise SystemExit(f"--reuse-features: {split} clips differ from the cached ones")
        for k, e in enumerate(entries):
            if old is not None:
                n_frames, n = old[e["id"]]["n_frames"], old[e["id"]]["n_audio"]
            else:
                wav = common.read_wav(Path(e["path"]))
                feats = extractor([wav], sampling_rate=common.SAMPLE_RATE, return_tensors="np")
                n_frames = int(feats["input_features_mask"][0].sum())
                n = common.n_audio_tokens(len(wav))
                assert n == math.ceil(n_frames / 4), (e["id"], n, n_frames)
                h = subsampled(sub, feats)
                assert len(h) == n, (e["id"], len(h), n)
                if k < 3:
                    pb.check_against_processor(proc, wav, n)
                chunks.append(h.astype(np.float16))
            groups = word_tokens(tok, e["text"])
            spikes = spike_positions(groups, [w[1] for w in e["words"]], n)
            unaligned += spikes is None
            index.append({"id": e["id"], "offset": offset, "n_frames": n_frames, "n_audio": n,
                          "target": pb.target(e["text"]), "text": e["text"], "spikes": spikes,
                          "spans": word_spans(groups, e["words"], n), "groups": groups,
                          "word_ends": [w[1] for w in e["words"]],
                          "phones": phone_labels(e["phones"], inventory, n)})
            offset += n
            if (k + 1) % 2000 == 0:
                print(f"  {split}: {k + 1}/{len(entries)} clips, {time.time() - t0:.0f} s", flush=True)
        if old is None:
            np.save(run / f"sub_{split}.npy", np.concatenate(chunks))
        (run / f"index_{split}.json").write_text(json.dumps(index))
        print(f"{split}: {len(index)} clips ({unaligned} without room for their spikes), {offset} audio tokens, "
              f"{time.time() - t0:.0f} s", flush=True)
    (run / "prompt.json").write_text(json.dumps({"head": pb.head, "tail": pb.tail}))


def share_prepared(source: Path, run: Path) -> None:
    """Give a new run the prepared data of `source` (tokenizer, phones, subsampler, cached features)
    as symbolic links to the run that prepared it, so splits prepared there after `source` was made
    are shared too."""
    run.mkdir(parents=True, exist_ok=True)
    origin = (source / "subsampler.pt").resolve().parent
    for item in sorted(origin.iterdir()):
        if item.name in ("tokenizer", "phones.json", "prompt.json", "subsampler.pt") or \
                item.name.startswith(("sub_", "index_")):
            link = run / item.name
            if not link.exists():
                link.symlink_to(item.resolve())


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


class Split:
    """One or more prepared splits ("train,extra") as one list of clips over their cached features."""

    def __init__(self, run: Path, names: str):
        self.feats, self.index = [], []
        for source, name in enumerate(names.split(",")):
            self.feats.append(np.load(run / f"sub_{name}.npy", mmap_mode="r"))
            self.index += [{**r, "source": source} for r in json.loads((run / f"index_{name}.json").read_text())]
        self.dim = self.feats[0].shape[1]

    def __len__(self) -> int:
        return len(self.index)

    def features(self, r: dict) -> np.ndarray:
        return np.asarray(self.feats[r["source"]][r["offset"]:r["offset"] + r["n_audio"]], dtype=np.float32)


def augment(x: torch.Tensor, rng: np.random.Generator, n_freq: int) -> torch.Tensor:
    """SpecAugment on the subsampler output [tokens, freq*channels]: up to two bands of <= 3 of its
    frequency positions (<= 12 mel bins) and up to two single tokens (40 ms, shorter than any
    word) set to the clip's mean."""
    x = x.clone()
    mean = x.mean(0)
    t = x.shape[0]
    per_freq = x.shape[1] // n_freq
    for _ in range(int(rng.integers(0, 3))):
        w = int(rng.integers(1, 4))
        f = int(rng.integers(0, n_freq - w))
        cols = slice(f * per_freq, (f + w) * per_freq)
        x[:, cols] = mean[cols]
    for _ in range(int(rng.integers(0, 3))):
        k = int(rng.integers(0, t))
        x[k] = mean
    return x


def truncated(r: dict, rng: np.random.Generator) -> dict:
    """The clip cut at a random point (at least 30 % kept), its target reduced to the words heard
    completely: what a streaming decoder sees mid-utterance. Teaching the model to leave a
    half-heard last word out keeps the streaming engine's agreed (committed) prefix right."""
    n_audio = int(rng.integers(max(2, int(0.3 * r["n_audio"])), r["n_audio"] + 1))
    # Token k is final once (k+1)*40 ms of audio have arrived (up to 30 ms of look-ahead aside).
    cut_s = n_audio * TOKEN_SECONDS
    ends = [e for e in r["word_ends"]]
    heard = 0
    while heard < len(ends) and ends[heard] <= cut_s:
        heard += 1
    groups = r["groups"][:heard]
    target = [t for g in groups for t in g] + r["target"][-1:]
    spans = [[a, min(b, n_audio), label] for a, b, label in r["spans"] if a < n_audio]
    return {**r, "n_audio": n_audio, "target": target, "spans": spans, "phones": r["phones"][:n_audio],
            "spikes": spike_positions(groups, ends[:heard], n_audio) if groups else []}


def collate(split: Split, items: list[int], pb: common.PromptBuilder, pad_id: int, n_vocab: int,
            rng: np.random.Generator | None = None, truncate: float = 0.0) -> dict:
    """Subsampler output, left-padded prompt+target ids, decoder labels and the frame labels.

    Frame labels cover the valid audio tokens of the batch in order (the order of transformers'
    `audio_hidden_states`): `spike` (blank = n_vocab), `previous` (start = n_vocab, -100 off the
    spikes), `word` (silence = n_vocab). A clip whose spikes do not fit gets -100 spike labels.
    With `rng`, SpecAugment, and a `truncate` share of clips cut short (`truncated`).
    """
    rows = [split.index[i] for i in items]
    if rng is not None and truncate > 0:
        rows = [truncated(r, rng) if rng.random() < truncate else r for r in rows]
    t_max = max(r["n_audio"] for r in rows)
    feats = torch.zeros(len(rows), t_max, split.dim)
    mask = torch.zeros(len(rows), t_max, dtype=torch.bool)
    seqs, tgt_lens = [], []
    spike, previous, word, phone = [], [], [], []
    for b, r in enumerate(rows):
        x = torch.from_numpy(split.features(r))
        if rng is not None:
            x = augment(x, rng, N_FREQ)
        feats[b, :r["n_audio"]] = x
        mask[b, :r["n_audio"]] = True
        seqs.append(pb.prompt(r["n_audio"]) + r["target"])
        tgt_lens.append(len(r["target"]))
        n = r["n_audio"]
        s = torch.full((n,), n_vocab, dtype=torch.long)
        p = torch.full((n,), -100, dtype=torch.long)
        if r["spikes"] is None:
            s[:] = -100
        else:
            tokens = r["target"][:-1]
            for j, k in enumerate(r["spikes"]):
                s[k] = tokens[j]
                p[k] = tokens[j - 1] if j else n_vocab
        w = torch.full((n,), n_vocab, dtype=torch.long)
        for a, e, label in r["spans"]:
            w[a:e] = label
        phone.append(torch.tensor(r["phones"], dtype=torch.long))
        spike.append(s)
        previous.append(p)
        word.append(w)
    length = max(len(s) for s in seqs)
    ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    attn = torch.zeros(len(rows), length, dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, length - len(s):] = torch.tensor(s)
        attn[b, length - len(s):] = 1
    keep = max(tgt_lens) + 1
    # Logit j of the kept window predicts token length-keep+1+j; it is a target token iff it lies in
    # the last tgt_len positions.
    labels = ids[:, length - keep + 1:].clone()
    pos = torch.arange(length - keep + 1, length)
    for b, n in enumerate(tgt_lens):
        labels[b, pos < length - n] = -100
    return {"input_ids": ids, "attention_mask": attn, "position_ids": (attn.cumsum(-1) - 1).clamp(min=0),
            "input_features": feats, "input_features_mask": mask, "keep": keep, "labels": labels,
            "spike": torch.cat(spike), "previous": torch.cat(previous), "word": torch.cat(word),
            "phone": torch.cat(phone)}


def batches_by_length(split: Split, frames_per_batch: int, max_batch: int, rng: np.random.Generator) -> list[list[int]]:
    """Length-bucketed batches (little padding) in random order."""
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
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def cached_subsampler(model) -> None:
    """Training-time forward of the subsampler: its (frozen) convolutions' output comes precomputed
    from `prepare`, so `input_features` holds that output, one row per audio token."""
    sub = model.model.audio_tower.subsample_conv_projection

    def forward(x, mask=None):
        return sub.input_proj_linear(x), mask

    sub.forward = forward


FROZEN = ("subsample_conv_projection.layer0.", "subsample_conv_projection.layer1.")


class FrameHeads(torch.nn.Module):
    """Training-only linear readouts of the audio soft tokens (not exported)."""

    NAMES = ("phone", "spike", "previous", "word")

    def __init__(self, hidden: int, n_vocab: int, n_phones: int):
        super().__init__()
        self.phone = torch.nn.Linear(hidden, n_phones)
        self.spike = torch.nn.Linear(hidden, n_vocab + 1)
        self.previous = torch.nn.Linear(hidden, n_vocab + 1)
        self.word = torch.nn.Linear(hidden, n_vocab + 1)

    def losses(self, audio: torch.Tensor, batch: dict) -> dict[str, torch.Tensor]:
        audio = audio.float()
        out = {}
        for name in self.NAMES:
            logits = getattr(self, name)(audio)
            out[name] = F.cross_entropy(logits, batch[name], ignore_index=-100)
            valid = batch[name] != -100
            if name == "spike":
                # Accuracy on the word positions only (blank is the easy majority).
                valid = valid & (batch[name] != logits.shape[-1] - 1)
            out[name + "_acc"] = ((logits.argmax(-1) == batch[name]) & valid).sum() / valid.sum().clamp(min=1)
        return out


def audio_tokens(model, batch: dict) -> torch.Tensor:
    """The valid audio soft tokens of the batch (what the decoder receives), flattened in order."""
    out = model.model.get_audio_features(batch["input_features"], batch["input_features_mask"], return_dict=True)
    return out.pooler_output[out.attention_mask]


def forward_loss(model, heads: FrameHeads, batch: dict, weights: dict[str, float], decoder: bool):
    stats: dict[str, float] = {}
    if decoder:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    position_ids=batch["position_ids"], input_features=batch["input_features"],
                    input_features_mask=batch["input_features_mask"], use_cache=False,
                    logits_to_keep=batch["keep"])
        logits = out.logits[:, :-1].float()
        labels = batch["labels"]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        valid = labels != -100
        stats["ce"] = float(loss.detach())
        stats["acc"] = float(((logits.argmax(-1) == labels) & valid).sum() / valid.sum())
        audio = out.audio_hidden_states
    else:
        loss = torch.zeros(())
        audio = audio_tokens(model, batch)
    frame = heads.losses(audio, batch)
    for name in FrameHeads.NAMES:
        loss = loss + weights[name] * frame[name]
        stats[name] = float(frame[name].detach())
        stats[name + "_acc"] = float(frame[name + "_acc"])
    return loss, stats


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(total - warmup, 1)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(p, 1.0))))


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_tf(model, heads, split: Split, pb, pad_id: int, n_vocab: int, n: int, decoder: bool) -> dict:
    """Teacher-forced losses and accuracies on the first n clips."""
    model.eval()
    totals: dict[str, float] = {}
    items = list(range(min(n, len(split))))
    batches = 0
    for k in range(0, len(items), 24):
        batch = collate(split, items[k:k + 24], pb, pad_id, n_vocab)
        _, stats = forward_loss(model, heads, batch, dict.fromkeys(FrameHeads.NAMES, 1.0), decoder)
        for key, v in stats.items():
            totals[key] = totals.get(key, 0.0) + v
        batches += 1
    model.train()
    return {k: v / batches for k, v in totals.items()}


@torch.no_grad()
def evaluate_greedy(model, split: Split, pb, tok, n: int, show: int = 0) -> float:
    """Greedy WER on the first n clips through transformers' generate (batched, left-padded)."""
    model.eval()
    errors = words = 0
    pad_id = tok.pad_token_id
    eos = [tok.convert_tokens_to_ids(t) for t in ("<eos>", "<turn|>", "<|tool_response>")]
    items = list(range(min(n, len(split))))
    for k in range(0, len(items), 16):
        chunk = items[k:k + 16]
        rows = [split.index[i] for i in chunk]
        batch = collate(split, chunk, pb, pad_id, len(tok))
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
            if k + b < show:
                print(f"    ref: {r['text']}\n    hyp: {hyp}", flush=True)
    model.train()
    return errors / max(words, 1)


# ---------------------------------------------------------------------------------------------
# fit
# ---------------------------------------------------------------------------------------------


def fit(run: Path, args) -> None:
    torch.set_num_threads(args.threads)
    tok = common.build_tokenizer()
    pb = common.PromptBuilder(tok)
    pad_id, n_vocab = tok.pad_token_id, len(tok)
    assert json.loads((run / "prompt.json").read_text()) == {"head": pb.head, "tail": pb.tail}, "stale prepare"
    train, test = Split(run, args.train_splits), Split(run, "test")
    model = common.new_model(tok)
    sub_state = torch.load(run / "subsampler.pt")
    if args.init_from:
        load_exported(model, Path(args.init_from))
        for k, v in model.model.audio_tower.subsample_conv_projection.state_dict().items():
            if "input_proj" not in k and not torch.equal(v, sub_state[k]):
                raise SystemExit(f"{args.init_from}: its subsampler differs from the cached one; "
                                 f"run prepare with the same --init-from")
    else:
        model.model.audio_tower.subsample_conv_projection.load_state_dict(sub_state)
    cached_subsampler(model)
    for name, p in model.named_parameters():
        if any(f in name for f in FROZEN):
            p.requires_grad_(False)
    torch.manual_seed(args.seed)
    n_phones = len(json.loads((run / "phones.json").read_text()))
    heads = FrameHeads(model.config.text_config.hidden_size, n_vocab, n_phones)
    params = [p for p in model.parameters() if p.requires_grad] + list(heads.parameters())
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98), eps=1e-8)
    step, epoch, pos = 0, 0, 0
    ckpt = run / "ckpt.pt"
    # This run's own checkpoint resumes it; otherwise `--continue-from` starts a new stage from a
    # finished run's weights, frame heads and optimiser moments, with a new schedule (step 0) and
    # possibly more data.
    start = ckpt if ckpt.exists() else RUNS / args.continue_from / "ckpt.pt" if args.continue_from else None
    if start is not None:
        state = torch.load(start, weights_only=False)
        model.load_state_dict(state["model"])
        heads.load_state_dict(state["heads"])
        opt.load_state_dict(state["opt"])
        if start == ckpt:
            step, epoch, pos = state["step"], state["epoch"], state["pos"]
            print(f"resumed at step {step} (epoch {epoch}, batch {pos})", flush=True)
        else:
            print(f"continuing run {args.continue_from} from its step {state['step']}", flush=True)
    model.train()
    log = open(run / "train.log", "a")

    def say(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    say(f"fit: {len(train)} train ({args.train_splits}) / {len(test)} test clips, {args.steps} steps ({args.encoder_steps} audio-only), "
        f"lr {args.lr}, frames/batch {args.frames_per_batch}, threads {args.threads}")
    t_start = time.time()
    window: dict[str, float] = {}
    window_n, window_t = 0, time.time()
    while step < args.steps:
        epoch_rng = np.random.default_rng([args.seed, epoch])
        batches = batches_by_length(train, args.frames_per_batch, args.max_batch, epoch_rng)
        aug_rng = np.random.default_rng([args.seed, epoch, 1])
        while pos < len(batches) and step < args.steps:
            decoder = step >= args.encoder_steps
            for g in opt.param_groups:
                g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
            batch = collate(train, batches[pos], pb, pad_id, n_vocab, aug_rng if args.augment else None,
                            args.truncate)
            weights = {"phone": args.phone_weight, "spike": args.spike_weight, "previous": args.previous_weight,
                       "word": args.word_weight}
            if decoder:
                weights = {k: v * args.frame_weight_after for k, v in weights.items()}
            loss, stats = forward_loss(model, heads, batch, weights, decoder)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, args.clip)
            opt.step()
            step += 1
            pos += 1
            for k, v in stats.items():
                window[k] = window.get(k, 0.0) + v
            window_n += 1
            if step % args.log_every == 0:
                dt = time.time() - window_t
                shown = " ".join(f"{k} {v / window_n:.3f}" for k, v in window.items())
                say(f"step {step} epoch {epoch} {shown} lr {opt.param_groups[0]['lr']:.2e} {dt / window_n:.2f} s/step")
                window, window_n, window_t = {}, 0, time.time()
            if step % args.ckpt_every == 0 or step == args.steps:
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "heads": heads.state_dict(), "opt": opt.state_dict(),
                            "step": step, "epoch": epoch, "pos": pos}, tmp)
                os.replace(tmp, ckpt)
            if step % args.eval_every == 0 or step == args.steps:
                ev = evaluate_tf(model, heads, test, pb, pad_id, n_vocab, args.eval_clips, decoder)
                say(f"eval step {step}: " + " ".join(f"{k} {v:.3f}" for k, v in ev.items()))
                if decoder and args.eval_greedy:
                    wer = evaluate_greedy(model, test, pb, tok, args.eval_greedy, show=3)
                    say(f"eval step {step}: greedy WER on {args.eval_greedy} test clips {wer * 100:.2f} %")
        if pos >= len(batches):
            epoch += 1
            pos = 0
    wer = evaluate_greedy(model, test, pb, tok, len(test))
    say(f"done: {step} steps, {(time.time() - t_start) / 60:.1f} min this session; greedy test WER "
        f"({len(test)} clips) {wer * 100:.2f} %")
    torch.save(model.state_dict(), run / "final.pt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=["prepare", "fit"])
    ap.add_argument("--run", default="demo")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--limit", type=int, default=None, help="prepare: only the first N clips of each split")
    ap.add_argument("--splits", default="train,test", help="prepare: the data splits to cache")
    ap.add_argument("--reuse-features", action="store_true", help="prepare: keep the run's subsampler and its cached output; compute only missing splits")
    ap.add_argument("--init-from", default=None,
                    help="start from an exported model (e.g. model/demo-model): prepare and fit alike")
    ap.add_argument("--train-splits", default="train", help="fit: prepared splits to train on, e.g. train,extra")
    ap.add_argument("--continue-from", default=None,
                    help="fit: start a new run from another run's final checkpoint (its prepared data is shared)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--encoder-steps", type=int, default=300, help="first steps: audio path and frame heads only")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=5.0, help="global gradient-norm clip")
    ap.add_argument("--frames-per-batch", type=int, default=1600, help="audio tokens per batch (25 per second)")
    ap.add_argument("--max-batch", type=int, default=48)
    ap.add_argument("--phone-weight", type=float, default=1.0)
    ap.add_argument("--spike-weight", type=float, default=1.0)
    ap.add_argument("--previous-weight", type=float, default=0.5)
    ap.add_argument("--word-weight", type=float, default=0.5)
    ap.add_argument("--frame-weight-after", type=float, default=0.3,
                    help="factor on the frame losses once the decoder trains")
    ap.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True, help="SpecAugment")
    ap.add_argument("--truncate", type=float, default=0.2, help="share of clips cut short (streaming partials)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-clips", type=int, default=150)
    ap.add_argument("--eval-greedy", type=int, default=48, help="clips for the periodic greedy WER (0: off)")
    args = ap.parse_args()
    run = RUNS / args.run
    if args.stage == "prepare":
        prepare(run, Path(args.data), args.splits.split(","), args.limit, args.threads, args.reuse_features,
                Path(args.init_from) if args.init_from else None)
    else:
        if args.continue_from:
            share_prepared(RUNS / args.continue_from, run)
        torch.manual_seed(args.seed)
        fit(run, args)


if __name__ == "__main__":
    main()
