#!/usr/bin/env bash
# Runs the protocol fuzz target for a bounded time: fuzz/run.sh SECONDS (default 60).
# Installs cargo-fuzz if missing. Needs a nightly toolchain (libFuzzer instrumentation).
# Exits non-zero if the fuzzer finds a crash; the reproducer lands in fuzz/artifacts/.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 SECONDS" >&2
    exit 2
fi

cd "$(dirname "$0")"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    if ! rustup toolchain install nightly --profile minimal; then
        # libFuzzer needs nightly; a machine that cannot fetch one skips the run, loudly.
        echo "fuzz: SKIPPED, no nightly toolchain could be installed" >&2
        exit 0
    fi
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi

mkdir -p corpus/protocol_parse
# Seed with the protocol's own examples so the fuzzer starts from valid messages.
seeds=(
    '{"type":"start","sample_rate":16000,"encoding":"s16le"}'
    '{"type":"start","v":1,"sample_rate":48000,"encoding":"f32le","channels":2,"language":"de","task":"translate","target_language":"en","partials":false,"endpointing_ms":800,"label":"x","resume":{"session_id":"s-1","last_final_segment_id":3}}'
    '{"type":"flush","id":"ptt-7"}'
    '{"type":"close"}'
    '{"type":"keepalive"}'
    '{"type":"session.update","session":{"type":"transcription","audio":{"input":{"format":{"type":"audio/pcm","rate":24000},"transcription":{"model":"m","language":"en"},"turn_detection":{"type":"server_vad","threshold":0.5,"silence_duration_ms":500}}},"include":null}}'
    '{"type":"transcription_session.update","session":{"input_audio_format":"pcm16","turn_detection":null}}'
    '{"type":"input_audio_buffer.append","audio":"AAAAQAAAwP8="}'
    '{"type":"input_audio_buffer.commit","event_id":"e1"}'
)
for i in "${!seeds[@]}"; do
    printf '%s' "${seeds[$i]}" > "corpus/protocol_parse/seed-$i"
done

# -max_len covers a full control message; the run stops after $seconds.
exec cargo +nightly fuzz run protocol_parse --release -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1
