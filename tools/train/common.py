"""Shared pieces of Hark's demonstration-model pipeline: tokenizer, model config, prompt, features.

The model is transformers' `Gemma4ForConditionalGeneration`, unchanged, at small dimensions that keep
every distinctive feature of Gemma 4 E2B's speech path (see `model_config`).
"""

from __future__ import annotations

import json
import math
import sys
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Gemma4AudioConfig,
    Gemma4AudioFeatureExtractor,
    Gemma4Config,
    Gemma4ForConditionalGeneration,
    Gemma4Processor,
    Gemma4TextConfig,
    GenerationConfig,
)
from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools" / "reference"))
from gemma4_prompt import asr_instruction, asr_prompt_text  # noqa: E402

sys.path.insert(0, str(HERE))
import gen_data  # noqa: E402

SAMPLE_RATE = 16_000
MODEL_SEED = 4242

# ---------------------------------------------------------------------------------------------
# Tokenizer: small BPE (byte fallback) over the vocabulary, with Gemma 4's special-token strings
# ---------------------------------------------------------------------------------------------

BASE_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
GEMMA4_SPECIALS = [
    "<|tool>", "<tool|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>",
    '<|"|>', "<|think|>", "<|channel>", "<channel|>", "<|turn>", "<turn|>",
    "<|image>", "<|audio>", "<|image|>", "<|audio|>", "<image|>", "<audio|>", "<|video|>",
]
LEARNED_VOCAB = 1024
TOKENIZER_SENTENCES = 30_000


def tokenizer_corpus() -> list[str]:
    """Text the BPE merges are learned from: the prompt's fixed text and sentences like the corpus's."""
    classes = gen_data.load_vocabulary()
    words = gen_data.all_words(classes)
    lines = [asr_instruction("English"), "user\n", "model\n", "\n"] * 200
    # Every word at least once with and without the leading space, so none falls back to bytes.
    lines += [f"{w} {w}" for w in words]
    rng = np.random.default_rng([gen_data.SEED, 99])
    lines += [gen_data.make_sentence(rng, classes, words) for _ in range(TOKENIZER_SENTENCES)]
    return lines


def build_tokenizer() -> GemmaTokenizer:
    """Merges never cross a word boundary (like SentencePiece), so GemmaTokenizer's whole-string BPE
    reproduces the per-word tokenisation used while learning them."""
    bpe = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="never", split=True)
    bpe.train_from_iterator(tokenizer_corpus(), trainers.BpeTrainer(vocab_size=LEARNED_VOCAB, show_progress=False))
    spec = json.loads(bpe.to_str())
    learned = [tok for tok, _ in sorted(spec["model"]["vocab"].items(), key=lambda kv: kv[1])]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in spec["model"]["merges"]]
    order = list(BASE_SPECIALS) + GEMMA4_SPECIALS + [f"<0x{b:02X}>" for b in range(256)]
    order += [t for t in learned if t not in order]
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


def special_ids(tok) -> dict[str, int]:
    return {s: tok.convert_tokens_to_ids(s) for s in BASE_SPECIALS + GEMMA4_SPECIALS}


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

TEXT_DIMS = dict(
    hidden_size=160,
    intermediate_size=384,  # 768 on the KV-shared layers (use_double_wide_mlp)
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=1,  # MQA, like E2B
    head_dim=64,
    global_head_dim=128,  # full-attention layers use twice the head size, like E2B (256/512)
    layer_types=["sliding_attention", "sliding_attention", "full_attention"] * 2,
    sliding_window=512,  # as E2B: every layer sees a whole clip of up to ~14 s
    num_kv_shared_layers=3,  # layers 3-5 reuse the K/V of layers 1 (sliding) and 2 (full)
    use_double_wide_mlp=True,
    hidden_size_per_layer_input=32,
    final_logit_softcapping=30.0,
    rope_parameters={
        "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
        "full_attention": {"rope_type": "proportional", "partial_rotary_factor": 0.25, "rope_theta": 1_000_000.0},
    },
    max_position_embeddings=4096,
)
AUDIO_DIMS = dict(
    hidden_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    # E2B: [128, 32]. The first must stay 128: transformers sizes input_proj_linear as
    # (channels[0] // 4) * channels[1], which is right only when it equals the 128 mel bins.
    subsampling_conv_channels=[128, 16],
    conv_kernel_size=5,
    attention_chunk_size=12,
    attention_context_left=13,
    attention_context_right=0,
    attention_logit_cap=50.0,
    output_proj_dims=160,
    use_clipped_linears=True,
)


def model_config(tok) -> Gemma4Config:
    ids = special_ids(tok)
    vocab_size = len(tok)
    text_cfg = Gemma4TextConfig(
        **TEXT_DIMS, vocab_size=vocab_size, vocab_size_per_layer_input=vocab_size,
        pad_token_id=ids["<pad>"], eos_token_id=ids["<eos>"], bos_token_id=ids["<bos>"],
    )
    cfg = Gemma4Config(
        text_config=text_cfg, audio_config=Gemma4AudioConfig(**AUDIO_DIMS), vision_config=None,
        boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"], audio_token_id=ids["<|audio|>"],
        boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"], image_token_id=ids["<|image|>"],
        video_token_id=ids["<|video|>"], eos_token_id=[ids["<eos>"], ids["<turn|>"]],
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
    )
    cfg.architectures = ["Gemma4ForConditionalGeneration"]
    return cfg


def new_model(tok) -> Gemma4ForConditionalGeneration:
    torch.manual_seed(MODEL_SEED)
    model = Gemma4ForConditionalGeneration(model_config(tok))
    variance_preserving_init(model)
    return model


@torch.no_grad()
def variance_preserving_init(model: torch.nn.Module) -> None:
    """Every weight drawn with std 1/sqrt(fan_in) (LeCun), embeddings with std 1/sqrt(width).

    transformers' default (std `initializer_range` = 0.02 everywhere) suits widths in the
    thousands; at these widths it makes each linear map shrink its input by ~4x, and the chains of
    them here (subsampler -> input_proj -> conformer -> output_proj -> embed_audio -> decoder) sit
    on a long plateau before anything is learnt: measured on 32 clips, a frame classifier through
    output_proj and embed_audio reached a loss of 4.46 in 40 steps with the default init and
    2.5-3.4 with this one. Norm weights, biases and the other buffers keep transformers' values.
    """
    torch.manual_seed(MODEL_SEED)
    for module in model.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)):
            fan_in = module.weight[0].numel()
            module.weight.normal_(0.0, fan_in ** -0.5)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, torch.nn.Embedding):
            module.weight.normal_(0.0, module.weight.shape[1] ** -0.5)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()


@torch.no_grad()
def subsampler_pca_init(sub, clips: list[tuple[torch.Tensor, torch.Tensor]], seed: int = MODEL_SEED) -> float:
    """Data-dependent initialisation of the two subsampling convolutions, which then stay frozen.

    Random filters lose most of what the 128 -> 16 channel second layer could pass on (each
    output position keeps 16 random projections of a 3x3x128 patch). Here both layers come in
    +/- pairs, so that the channel LayerNorm only rescales (the pairs cancel in its mean) and the
    ReLU keeps both signs: layer0 = directions spread over the principal axes of 3x3 log-mel
    patches, layer1 = the top principal components of layer0's output patches. A small causal
    probe trained on the frozen output of each reached 63 % held-out frame phoneme accuracy
    against 57 % with random filters. Returns the variance share layer1 keeps.
    """
    c0, c1 = sub.layer0.conv.out_channels, sub.layer1.conv.out_channels
    gen = torch.Generator().manual_seed(seed)
    patches = torch.cat([F.unfold(F.pad(x.unsqueeze(1), (1, 1, 1, 1)), 3, stride=2).transpose(1, 2)[0]
                         for x, _ in clips]).double()
    eig, vec = torch.linalg.eigh(patches.T @ patches / len(patches))
    z = torch.randn(c0 // 2, 9, generator=gen, dtype=torch.float64)
    dirs = z @ (vec * eig.clamp(min=1e-6) ** -0.25).T
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    sub.layer0.conv.weight.copy_(torch.cat([dirs, -dirs]).float().reshape(c0, 1, 3, 3))
    outs = []
    for x, mask in clips:
        h, _ = sub.layer0(x.unsqueeze(1), mask)
        outs.append(F.unfold(F.pad(h, (1, 1, 1, 1)), 3, stride=2).transpose(1, 2)[0])
    p = torch.cat(outs).double()
    p = p[torch.randperm(len(p), generator=gen)[:200_000]]
    centred = p - p.mean(0)
    eig1, vec1 = torch.linalg.eigh(centred.T @ centred / len(centred))
    top = vec1[:, -(c1 // 2):].flip(1).T
    sub.layer1.conv.weight.copy_(torch.cat([top, -top]).float().reshape(c1, c0, 3, 3))
    return float(eig1[-(c1 // 2):].sum() / eig1.sum())


def generation_config(tok) -> GenerationConfig:
    ids = special_ids(tok)
    # As released: sampling defaults from the model card; Hark and the evaluation decode greedily.
    return GenerationConfig(
        bos_token_id=ids["<bos>"], pad_token_id=ids["<pad>"],
        eos_token_id=[ids["<eos>"], ids["<turn|>"], ids["<|tool_response>"]],
        do_sample=True, temperature=1.0, top_k=64, top_p=0.95,
    )


def processor(tok) -> Gemma4Processor:
    from transformers.models.gemma4.image_processing_gemma4 import Gemma4ImageProcessor
    from transformers.models.gemma4.video_processing_gemma4 import Gemma4VideoProcessor

    return Gemma4Processor(feature_extractor=Gemma4AudioFeatureExtractor(), image_processor=Gemma4ImageProcessor(),
                           tokenizer=tok, video_processor=Gemma4VideoProcessor())


# ---------------------------------------------------------------------------------------------
# Prompt and targets
# ---------------------------------------------------------------------------------------------


class PromptBuilder:
    """Token ids of the released ASR prompt around n audio soft tokens, and of a transcript target.

    Special tokens split the text, so tokenising the fixed pieces once gives the same ids as the
    processor's tokenisation of the whole expanded prompt (checked in `check_against_processor`).
    """

    def __init__(self, tok):
        self.tok = tok
        full = asr_prompt_text(tok.audio_token)
        head, tail = full.split(tok.audio_token)
        self.head = tok(head + tok.boa_token, add_special_tokens=False)["input_ids"]
        self.tail = tok(tok.eoa_token + tail, add_special_tokens=False)["input_ids"]
        self.audio_id = tok.audio_token_id
        self.end_of_turn = tok.convert_tokens_to_ids("<turn|>")

    def prompt(self, n_audio: int) -> list[int]:
        return self.head + [self.audio_id] * n_audio + self.tail

    def target(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] + [self.end_of_turn]

    def check_against_processor(self, proc, wav: np.ndarray, n_audio: int) -> None:
        ids = proc(text=asr_prompt_text(self.tok.audio_token), audio=[wav], return_tensors="pt")["input_ids"][0]
        assert ids.tolist() == self.prompt(n_audio), "prompt ids differ from Gemma4Processor's"


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1 or w.getframerate() != SAMPLE_RATE:
            raise ValueError(f"{path}: expected 16 kHz mono s16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def read_manifest(path: Path) -> list[dict]:
    entries = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    for e in entries:
        e["path"] = str(Path(path).parent / e["audio"])
    return entries


def n_audio_tokens(n_samples: int) -> int:
    """docs/model.md §1.5: ceil(floor((N-1)/160) / 4), capped at 750."""
    if n_samples < 161:
        return 0
    return min(math.ceil(((n_samples - 1) // 160) / 4), 750)


# ---------------------------------------------------------------------------------------------
# Evaluation helpers
# ---------------------------------------------------------------------------------------------


def normalise(text: str) -> list[str]:
    keep = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower())
    return keep.split()


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]
