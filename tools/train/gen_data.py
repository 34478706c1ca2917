#!/usr/bin/env python3
"""Synthesise the speech corpus of Hark's demonstration model with espeak-ng and sox.

    python3 tools/train/gen_data.py                 # train + test sets (a few minutes)
    python3 tools/train/gen_data.py --split test    # only the held-out test set (seconds)
    python3 tools/train/gen_data.py --split extra   # a second training set (second training stage)
    python3 tools/train/gen_data.py --split extra2  # a third training set (third training stage)

Writes `<out>/<split>/<id>.wav` (16 kHz mono s16) and `<out>/<split>/manifest.jsonl`, one JSON object
per line: `{"id", "audio" (path relative to the manifest), "text", "voice", "wpm", "pitch", "gap",
"warp" (the `extra`/`extra2` splits' vocal-tract warp factor, or null), "noise", "snr_db", "reverb", "band",
"seconds", "words", "phones"}`. `words` holds each word's [start, end] in seconds of the final
clip, from espeak-ng's own word events (the synthesiser knows where every word starts; a word ends
where the next begins), `phones` each phoneme's [mnemonic, start] from its phoneme events (a
phoneme lasts until the next; `_` and `_:` are pauses); training uses them as alignment targets.

Everything is a pure function of the seed and the utterance index: utterance i of a split draws
from its own `numpy.random.default_rng([seed, split, i])`, espeak-ng and sox run with fixed
arguments (`sox -D` no dither, `-R` repeatable noise), so the test set regenerated alone is
byte-identical to the one generated with the training set. espeak-ng runs through its library
(libespeak-ng.so.1) in a freshly forked process per utterance: the library keeps a little state
from one utterance to the next, a fresh process makes every clip independent of the order.

Sentences: templates over the word classes of vocabulary.txt and random word sequences, 2-12 words.
Transcripts are lower case, no punctuation; digits are spoken as words by espeak-ng and written as
digits. The test sentences never occur in the training set, and the test voices (espeak-ng variants)
are never used in training.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pickle
import subprocess
import sys
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20260411
SPLIT_IDS = {"train": 0, "test": 1, "extra": 2, "extra2": 3}
DEFAULT_COUNTS = {"train": 20000, "test": 300, "extra": 20000, "extra2": 20000}
# The later training splits also warp the vocal tract (sox `speed`: pitch, formants and tempo
# scale together) on a share of clips, by a factor in a range: new timbres beyond espeak-ng's
# variants, against the overfitting to the training voices. `extra2` warps wider and adds noise to
# more clips (noisy speech is the test set's hardest condition).
WARP = {"extra": (0.6, (0.88, 1.15)), "extra2": (0.7, (0.85, 1.2))}
NOISE_SHARE = {"extra2": 0.5}
SAMPLE_RATE = 16_000
MAX_SECONDS = 6.0

# espeak-ng English accents (all used in both splits).
ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc"]
# espeak-ng voice variants (speaker timbre). Whispered and novelty variants are left out.
TRAIN_VARIANTS = [
    "", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f5", "klatt", "klatt2", "klatt3",
    "klatt4", "klatt5", "klatt6", "adam", "Alex", "Alicia", "Andy", "Annie", "antonio", "aunty", "belinda",
    "benjamin", "boris", "caleb", "david", "Denis", "Diogo", "ed", "edward", "edward2", "Gene", "Gene2",
    "gustave", "Henrique", "Hugo", "iven", "iven2", "iven3", "iven4", "Jacky", "john", "kaukovalta", "Lee",
    "linda", "marcelo", "Marco", "Mario", "max", "Michael", "michel", "miguel", "Mike", "Nguyen", "pablo",
    "paul", "pedro", "quincy", "rob", "robert", "steph", "steph2", "steph3", "Storm", "zac", "anika",
    "AnxiousAndy", "grandpa", "grandma", "norbert", "sandro", "shelby", "victor",
]
# Held out: never heard in training.
TEST_VARIANTS = ["f4", "Andrea", "travis"]

NOISE_TYPES = ["whitenoise", "pinknoise", "brownnoise"]
NOISE_BED_SECONDS = 40


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------


def load_vocabulary(path: Path = HERE / "vocabulary.txt") -> dict[str, list[str]]:
    """Word classes of vocabulary.txt, in file order ('## name' headers, '#' comments)."""
    classes: dict[str, list[str]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("## "):
            current = line[3:].strip()
            classes.setdefault(current, [])
        elif line and not line.startswith("#"):
            if current is None:
                raise ValueError(f"{path}: word {line!r} before the first '## class' header")
            if line not in classes[current]:
                classes[current].append(line)
    return classes


def all_words(classes: dict[str, list[str]]) -> list[str]:
    words: list[str] = []
    for ws in classes.values():
        words += [w for w in ws if w not in words]
    return words


TEMPLATES = [
    "{verb} the {noun}",
    "please {verb} the {adjective} {noun}",
    "please {verb} the {noun} {time}",
    "{pronoun} {verb} the {noun} {time}",
    "{pronoun} will {verb} the {adjective} {noun} {time}",
    "i need {digit} {plural}",
    "we have {digit} {plural} and {digit} {plural}",
    "my number is {digit} {digit} {digit} {digit}",
    "call me at {digit} {digit} {digit} {digit} {digit}",
    "where is the {noun}",
    "where is my {adjective} {noun}",
    "the {noun} is {adjective}",
    "the {adjective} {noun} is in the {noun}",
    "can you {verb} the {noun} {time}",
    "could you {verb} my {noun} please",
    "there are {digit} {plural} in the {noun}",
    "do not {verb} the {noun}",
    "what is your {noun}",
    "turn on the {noun}",
    "turn off the {adjective} {plural}",
    "i like the {adjective} {noun}",
    "is it {adjective} {time}",
    "{pronoun} {verb} {digit} {plural} every {noun}",
    "the {noun} and the {noun} are {adjective}",
    "let me {verb} your {noun}",
    "why is the {noun} so {adjective}",
    "{digit} {digit} {digit}",
    "please {verb} {digit} {plural} {time}",
    "hello {pronoun} {verb} the {noun}",
    "yes {pronoun} can {verb} it {time}",
    "no {pronoun} should not {verb} the {noun}",
    "the {noun} was very {adjective} {time}",
    "{pronoun} said the {plural} are {adjective}",
    "how many {plural} are in the {noun}",
    "when will the {noun} be {adjective}",
    "who has the {adjective} {noun}",
    "okay {verb} {digit} {plural} and {verb} the {noun}",
    "thanks {pronoun} will {verb} it after the {noun}",
    "{adjective} {plural} {verb} {adjective} {plural}",
    "sometimes {pronoun} {verb} the {noun} with a {noun}",
]


def make_sentence(rng: np.random.Generator, classes: dict[str, list[str]], words: list[str]) -> str:
    """A template sentence (60 %) or a random word sequence (40 %), 2-12 words."""
    if rng.random() < 0.6:
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        out = []
        for piece in template.split(" "):
            if piece.startswith("{"):
                pool = classes[piece[1:-1]]
                out.append(pool[int(rng.integers(len(pool)))])
            else:
                out.append(piece)
        return " ".join(out)
    n = int(rng.integers(2, 11))
    return " ".join(words[int(rng.integers(len(words)))] for _ in range(n))


def sentences_for(split: str, count: int, classes, words, exclude: set[str] | None = None) -> list[str]:
    """Sentence i of a split depends only on (seed, split, i, attempt)."""
    out: list[str] = []
    taken = set(exclude or ())
    for i in range(count):
        attempt = 0
        while True:
            rng = np.random.default_rng([SEED, SPLIT_IDS[split], i, 1000 + attempt])
            s = make_sentence(rng, classes, words)
            if exclude is None or s not in taken:
                break
            attempt += 1
        if exclude is not None:
            taken.add(s)
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Audio
# ---------------------------------------------------------------------------------------------


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == SAMPLE_RATE, path
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def noise_beds(root: Path) -> dict[str, Path]:
    """Long sox-synthesised noise recordings; clips take a random stretch of one."""
    beds = {}
    root.mkdir(parents=True, exist_ok=True)
    for kind in NOISE_TYPES:
        path = root / f"{kind}.wav"
        if not path.exists():
            tmp = path.with_suffix(".tmp.wav")
            run(["sox", "-R", "-D", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                 str(tmp), "synth", str(NOISE_BED_SECONDS), kind, "gain", "-n", "-6"])
            tmp.rename(path)
        beds[kind] = path
    return beds


def utterance_params(split: str, index: int) -> dict:
    rng = np.random.default_rng([SEED, SPLIT_IDS[split], index, 1])
    variants = TEST_VARIANTS if split == "test" else TRAIN_VARIANTS
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
    variant = variants[int(rng.integers(len(variants)))]
    p = {
        "voice": accent + (f"+{variant}" if variant else ""),
        "wpm": int(rng.integers(120, 231)),
        "pitch": int(rng.integers(20, 81)),
        "gap": int(rng.integers(0, 4)) if rng.random() < 0.4 else 0,
        "pad": [round(float(rng.uniform(0.0, 0.35)), 3), round(float(rng.uniform(0.0, 0.35)), 3)],
        "level_db": round(float(rng.uniform(-26.0, -1.0)), 2),
        "reverb": None,
        "band": None,
        "noise": None,
        "snr_db": None,
        "noise_offset": None,
    }
    if rng.random() < 0.25:
        # sox reverb: reverberance %, HF damping %, room scale %.
        p["reverb"] = [int(rng.integers(10, 80)), int(rng.integers(10, 90)), int(rng.integers(10, 100))]
    if rng.random() < 0.1:
        lo = int(rng.integers(100, 400))
        p["band"] = [lo, int(rng.integers(3000, 7000))]
    if rng.random() < NOISE_SHARE.get(split, 0.35):
        p["noise"] = NOISE_TYPES[int(rng.integers(len(NOISE_TYPES)))]
        p["snr_db"] = round(float(rng.uniform(5.0, 30.0)), 2)
        p["noise_offset"] = round(float(rng.uniform(0.0, NOISE_BED_SECONDS - MAX_SECONDS - 2.0)), 3)
    # Drawn last and only for the warped splits, so the train and test clips stay what they always were.
    p["warp"] = None
    if split in WARP:
        share, span = WARP[split]
        if rng.random() < share:
            p["warp"] = round(float(rng.uniform(*span)), 3)
    return p


class _EspeakEvent(ctypes.Structure):
    """`espeak_EVENT` of speak_lib.h (x86-64 / aarch64 layout)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _EspeakVoice(ctypes.Structure):
    """`espeak_VOICE` of speak_lib.h."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(_EspeakEvent))
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_INITIALIZE_PHONEME_EVENTS = 1
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_WORDGAP = 1, 3, 7


def _espeak_child(voice: str, text: str, wpm: int, pitch: int, gap: int):
    lib = ctypes.CDLL("libespeak-ng.so.1")
    chunks: list[np.ndarray] = []
    words: list[tuple[int, int]] = []
    phones: list[tuple[str, int]] = []

    @_SYNTH_CALLBACK
    def on_audio(wav, n, events):
        if n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != 0:
            if events[i].type == _EVENT_WORD:
                words.append((events[i].text_position, events[i].sample))
            elif events[i].type == _EVENT_PHONEME:
                phones.append((bytes(events[i].id).split(b"\0")[0].decode("ascii", "replace"), events[i].sample))
            i += 1
        return 0

    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, None, _INITIALIZE_PHONEME_EVENTS)
    if rate <= 0:
        raise RuntimeError("espeak_Initialize failed")
    lib.espeak_SetSynthCallback(on_audio)
    # Like the espeak-ng command: a voice name, else a language ("en-gb+m3" = language + variant).
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        spec = _EspeakVoice(languages=voice.encode())
        if lib.espeak_SetVoiceByProperties(ctypes.byref(spec)) != 0:
            raise RuntimeError(f"espeak-ng has no voice {voice!r}")
    lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
    lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
    lib.espeak_SetParameter(_PARAM_WORDGAP, gap, 0)
    raw = text.encode()
    lib.espeak_Synth(ctypes.c_char_p(raw), len(raw) + 1, 0, _POS_CHARACTER, 0, 0, None, None)
    lib.espeak_Synchronize()
    return rate, np.concatenate(chunks), words, phones


def espeak(voice: str, text: str, wpm: int, pitch: int, gap: int):
    """(sample rate, s16 samples, [(1-based character offset, first sample)] per word event,
    [(phoneme mnemonic, first sample)] per phoneme event) from libespeak-ng, run in a forked child
    so that no synthesiser state survives between utterances."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_fd)
            try:
                result = ("ok", _espeak_child(voice, text, wpm, pitch, gap))
            except Exception as e:  # reported to the parent
                result = ("error", repr(e))
            with os.fdopen(write_fd, "wb") as f:
                f.write(pickle.dumps(result))
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not data:
        raise RuntimeError(f"espeak-ng child failed for {voice!r} {text!r}")
    kind, payload = pickle.loads(data)
    if kind != "ok":
        raise RuntimeError(f"espeak-ng: {payload} ({voice!r} {text!r})")
    return payload


def word_starts(text: str, events: list[tuple[int, int]]) -> list[int] | None:
    """First sample of each word of `text`, or None when espeak-ng's word events do not map one to one."""
    offsets, pos = [], 1
    for w in text.split(" "):
        offsets.append(pos)
        pos += len(w) + 1
    by_offset = {}
    for offset, sample in events:
        by_offset.setdefault(offset, sample)
    if sorted(by_offset) != offsets:
        return None
    starts = [by_offset[o] for o in offsets]
    return starts if starts == sorted(starts) else None


def write_wav(path: Path, samples: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())


def synthesise(job: tuple) -> dict | None:
    """One utterance -> WAV; returns its manifest entry, or None when it is out of the length range."""
    split, index, text, out_dir, beds = job
    p = utterance_params(split, index)
    uid = f"{split}-{index:05d}"
    dst = Path(out_dir) / f"{uid}.wav"
    with tempfile.TemporaryDirectory(prefix="hark-gen-") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw.wav"
        rate, samples, events, phone_events = espeak(p["voice"], text, p["wpm"], p["pitch"], p["gap"])
        starts = word_starts(text, events)
        if starts is None:
            return None
        write_wav(raw, samples, rate)
        # `speed` scales time by 1/warp, sox's padding shifts every word; `sinc` is zero-phase and
        # `reverb` only adds a tail.
        scale = 1.0 / (p["warp"] or 1.0)

        def seconds_at(sample: int) -> float:
            return sample / rate * scale + p["pad"][0]

        bounds = [seconds_at(s) for s in starts] + [seconds_at(len(samples))]
        phones = [[name, round(seconds_at(s), 4)] for name, s in phone_events]
        clean = tmp / "clean.wav"
        effects = ["speed", str(p["warp"])] if p["warp"] else []
        effects += ["pad", str(p["pad"][0]), str(p["pad"][1])]
        if p["band"]:
            effects += ["sinc", f"{p['band'][0]}-{p['band'][1]}"]
        if p["reverb"]:
            effects += ["reverb", *map(str, p["reverb"])]
        run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
             str(clean), *effects, "gain", "-n", "-3"])
        speech = read_wav(clean)
        seconds = len(speech) / SAMPLE_RATE
        if seconds > MAX_SECONDS or seconds < 0.5:
            return None
        level = ["gain", "-n", str(p["level_db"])]
        if p["noise"]:
            seg = tmp / "noise.wav"
            run(["sox", "-D", str(beds[p["noise"]]), str(seg), "trim", str(p["noise_offset"]), f"{seconds:.6f}"])
            speech_rms = float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)) + 1e-9)
            noise = read_wav(seg)
            noise_rms = float(np.sqrt(np.mean(noise.astype(np.float64) ** 2)) + 1e-9)
            gain = speech_rms / noise_rms / (10.0 ** (p["snr_db"] / 20.0))
            run(["sox", "-D", "-m", "-v", "1", str(clean), "-v", f"{gain:.6f}", str(seg), "-b", "16", str(dst),
                 *level])
        else:
            run(["sox", "-D", str(clean), str(dst), *level])
    entry = {"id": uid, "audio": dst.name, "text": text, "voice": p["voice"], "wpm": p["wpm"], "pitch": p["pitch"],
             "gap": p["gap"], "warp": p["warp"], "noise": p["noise"], "snr_db": p["snr_db"], "reverb": p["reverb"], "band": p["band"],
             "seconds": round(len(read_wav(dst)) / SAMPLE_RATE, 3),
             "words": [[round(a, 4), round(b, 4)] for a, b in zip(bounds[:-1], bounds[1:])],
             "phones": phones}
    return entry


def generate_split(split: str, sentences: list[str], out: Path, jobs: int) -> list[dict]:
    split_dir = out / split
    split_dir.mkdir(parents=True, exist_ok=True)
    beds = noise_beds(out / "noise")
    work = [(split, i, s, str(split_dir), beds) for i, s in enumerate(sentences)]
    entries: list[dict] = []
    skipped = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for n, entry in enumerate(pool.map(synthesise, work, chunksize=16)):
            if entry is None:
                skipped += 1
            else:
                entries.append(entry)
            if (n + 1) % 1000 == 0:
                print(f"  {split}: {n + 1}/{len(work)}", flush=True)
    with open(split_dir / "manifest.jsonl", "w") as f:
        for e in entries:
            f.write(json.dumps(e, sort_keys=True) + "\n")
    hours = sum(e["seconds"] for e in entries) / 3600
    print(f"{split}: {len(entries)} utterances ({skipped} out of the 0.5-{MAX_SECONDS} s range or unaligned, skipped), "
          f"{hours:.2f} h of audio -> {split_dir / 'manifest.jsonl'}", flush=True)
    return entries


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE / "data"))
    ap.add_argument("--split", choices=["all", "train", "test", "extra", "extra2"], default="all",
                    help="all = train + test; extra, extra2 = second and third training sets (new sentences, "
                         "warped voices; extra2 warps wider and is noisier)")
    ap.add_argument("--train-count", type=int, default=DEFAULT_COUNTS["train"])
    ap.add_argument("--test-count", type=int, default=DEFAULT_COUNTS["test"])
    ap.add_argument("--extra-count", type=int, default=DEFAULT_COUNTS["extra"],
                    help="utterances of the extra or extra2 split")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args()
    if args.train_count != DEFAULT_COUNTS["train"] and args.split == "test":
        print("note: the test sentences exclude the training sentences of --train-count; the canonical test set "
              f"uses {DEFAULT_COUNTS['train']}", file=sys.stderr)

    classes = load_vocabulary()
    words = all_words(classes)
    out = Path(args.out)
    train_sentences = sentences_for("train", args.train_count, classes, words)
    if args.split in ("all", "train"):
        generate_split("train", train_sentences, out, args.jobs)
    test_sentences = sentences_for("test", args.test_count, classes, words, exclude=set(train_sentences))
    if args.split in ("all", "test"):
        generate_split("test", test_sentences, out, args.jobs)
    if args.split in ("extra", "extra2"):
        generate_split(args.split,
                       sentences_for(args.split, args.extra_count, classes, words, exclude=set(test_sentences)),
                       out, args.jobs)


if __name__ == "__main__":
    main()
