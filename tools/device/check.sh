#!/usr/bin/env bash
# Hark's GPU check: one command that, on a machine with an NVIDIA GPU and no network, runs
#   (a) numerics: `hark dump --device cuda --against` on the fixture checkpoints, every stage
#       compared with the committed golden references (tests/fixtures/golden) at the f16
#       tolerances of model/tests/golden.rs (cosine ≥ 0.997, max |Δ| ≤ 8e-2 of max |ref|, same
#       greedy ids where the reference margin is > 0.05);
#   (b) speed: `hark bench --backend cuda` at E2B shapes (random weights): encoder, audio and
#       prompt prefill, decode ms/token, end to end, one stream through the streaming engine;
#       f16 weights (the Burn path's only half format today), and bf16/q8/q4 wherever a quick
#       probe at tiny shapes shows the CUDA path accepts them;
#   (c) concurrency: `hark-loadbench` against `harkd --device cuda --model synthetic:e2b` with
#       batching on, doubling then bisecting the concurrent real-time streams (sustained: p95
#       lag ≤ 1 s and p95 final latency ≤ 2 s), with onset → first partial and final latency
#       at 1, 8 and the sustained N;
# and writes everything as JSON under the output folder (env, numerics, bench, loadbench,
# summary .json and check.log: six files, within what a device run sends back). It takes under
# 8 minutes; every step has its own time limit, so a hang costs a step, not the run. Exit
# status: 0 all passed, 1 a step failed (its JSON says which), 2 no GPU / bad arguments.
#
#   tools/device/check.sh --out DIR [--bundle FILE.tar.xz | --bin DIR] [--batch N]
#                         [--max-streams N] [--seconds S]
#   tools/device/check.sh --dry-run-cpu --out DIR       # same steps on this CPU, small shapes
#
# The dry run (about 25 s on 2 cores) checks the script itself: fixture checkpoints at f32
# tolerances, `hark bench --config tiny`, `synthetic:tiny` with batching 4, at most 2 streams
# of 3 s. tests/tests/device_check.rs runs it and the refusal without a GPU.
#
# How a GPU session uses it (the device machine gets a copy of the repository, not the build
# toolchain, at most 64 MiB in all, and 10 minutes per command):
#   1. Build the CUDA binaries here, without debuginfo (burn-cuda builds offline once it knows
#      the CUDA version; no nvcc needed; kernels are compiled by NVRTC at run time):
#        CUDARC_CUDA_VERSION=12080 cargo build --release --config profile.release.debug=false \
#          -p hark-clients -p hark-daemon -p hark-tests \
#          --features hark-clients/cuda,hark-daemon/cuda
#   2. Pack them (stripped, one xz stream so hark and harkd share their common code):
#        tools/device/pack.sh target/device/hark-bins.tar.xz
#      The CPU build packs to about 14 MB; the tracked tree is about 39 MB; the bundle must
#      keep the two under 64 MiB.
#   3. One device run, with room left for a rerun after fixes:
#        run(command="tools/device/check.sh --bundle target/device/hark-bins.tar.xz --out $OUT",
#            carry=["target/device"], timeout_s=540)
#      What comes back under $OUT is the JSON this script writes; summarise it in
#      docs/performance.md (GPU section).
# Unchecked until a GPU run: the device image carries CUDA 13 (driver 580); cudarc loads
# libcuda and libnvrtc at run time by the version it was built for, so if env.json's
# `cuda_libraries` lacks a libnvrtc of that major version, rebuild with CUDARC_CUDA_VERSION
# set to the image's version (13000) if burn-cuda's cudarc accepts it.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

usage() { sed -n '/^#   tools/,/^#$/p' "$0" | sed 's/^# \{0,1\}//' >&2; }
die() { echo "check.sh: $*" >&2; exit 2; }

mode=cuda out="" bin="" bundle="" batch="" max_streams="" seconds=""
while (($#)); do
    case "$1" in
        --dry-run-cpu) mode=cpu ;;
        --out) out=${2:-}; shift ;;
        --bin) bin=${2:-}; shift ;;
        --bundle) bundle=${2:-}; shift ;;
        --batch) batch=${2:-}; shift ;;
        --max-streams) max_streams=${2:-}; shift ;;
        --seconds) seconds=${2:-}; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done
[ -n "$out" ] || { usage; die "--out DIR is required (on the device machine: --out \$OUT)"; }
for n in "$batch" "$max_streams"; do
    [[ -z "$n" || "$n" =~ ^[0-9]+$ ]] || die "--batch and --max-streams take a whole number"
done
[[ -z "$seconds" || "$seconds" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--seconds takes a number"

# Refuse before anything else when there is no GPU to check: no hang, a clear reason.
if [ "$mode" = cuda ]; then
    command -v nvidia-smi >/dev/null 2>&1 \
        || die "no NVIDIA GPU here (nvidia-smi not found); use --dry-run-cpu to check the script on the CPU"
    gpus=$(timeout 30 nvidia-smi -L 2>&1) && grep -q '^GPU ' <<<"$gpus" \
        || die "no NVIDIA GPU usable here (nvidia-smi -L: ${gpus:-no answer}); use --dry-run-cpu"
fi

mkdir -p "$out" || die "cannot create $out"
out=$(cd "$out" && pwd)
log="$out/check.log"
: >"$log"
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }
say() { printf '[%4ds] %s\n' "$(elapsed)" "$*" | tee -a "$log" >&2; }

if [ -n "$bundle" ]; then
    [ -f "$bundle" ] || die "no bundle at $bundle"
    bin=$(mktemp -d)
    tar -C "$bin" -xJf "$bundle" || die "cannot unpack $bundle"
fi
bin=${bin:-target/release}
for b in hark harkd hark-loadbench; do
    [ -x "$bin/$b" ] || die "$bin/$b is missing (build it: see the header of $0)"
done
bin=$(cd "$bin" && pwd)
# hark-loadbench starts the harkd beside it; many streams need many sockets.
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

# A JSON string of any text (escapes, control characters dropped).
json_str() {
    printf '"%s"' "$(printf '%s' "$1" | tr -d '\000-\010\013-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk 'NR > 1 { printf "\\n" } { printf "%s", $0 }')"
}
# The last JSON object line of a command's output, or an error object with its stderr's end.
json_or_error() { # stdout-file stderr-file rc what
    local line
    line=$(grep '^{' "$1" | tail -n 1)
    if [ -n "$line" ] && [ "$3" -eq 0 ]; then
        printf '%s' "$line"
    elif [ -n "$line" ]; then
        printf '{"exit_status":%d,"result":%s,"stderr":%s}' "$3" "$line" "$(json_str "$(tail -n 20 "$2")")"
    else
        printf '{"what":%s,"exit_status":%d,"stderr":%s,"ok":false}' "$(json_str "$4")" "$3" "$(json_str "$(tail -n 20 "$2")")"
    fi
}
# Run one step under a time limit, its output kept in the log.
step() { # seconds stdout-file stderr-file command...
    local limit=$1 so=$2 se=$3
    shift 3
    say "$*"
    timeout --kill-after=10 "$limit" "$@" >"$so" 2>"$se"
    local rc=$?
    cat "$se" >>"$log"
    [ "$rc" -eq 124 ] && say "timed out after ${limit}s"
    return "$rc"
}
tmp=$(mktemp -d)
failed=()

# ---- environment ------------------------------------------------------------------------------
commit=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
cpu=$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//')
if [ "$mode" = cuda ]; then
    gpu=$(timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -n 1)
    cuda=$(timeout 30 nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -n 1)
    # The toolkit's libraries (libnvrtc compiles Burn's kernels at run time) where cudarc looks.
    for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
        [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
    libs=$({ ldconfig -p 2>/dev/null | grep -oE 'lib(cuda|nvrtc|cublas)\.so[.0-9]*'
        ls /usr/local/cuda/lib64 2>/dev/null | grep -E '^lib(nvrtc|cublas)\.so'; } | sort -u | tr '\n' ' ')
else
    gpu="none (CPU dry run)" cuda="" libs=""
fi
printf '{"mode":"%s","commit":"%s","cpu":%s,"cores":%s,"gpu":%s,"cuda":%s,"cuda_libraries":%s,"kernel":%s,"date_utc":"%s"}\n' \
    "$mode" "$commit" "$(json_str "$cpu")" "$(nproc)" "$(json_str "$gpu")" "$(json_str "$cuda")" \
    "$(json_str "$libs")" "$(json_str "$(uname -r)")" "$(date -u +%FT%TZ)" >"$out/env.json"
say "mode $mode, gpu: $gpu, binaries: $bin"

# ---- (a) numerics against the golden references ------------------------------------------------
if [ "$mode" = cuda ]; then
    device=(--device cuda) tolerance=(--tolerance f16)
    # f32 weights on all three hand-written checkpoints, f16 weights where golden.rs runs them.
    numerics=("e2b-shaped f32" "varied f32" "with-vision f32" "e2b-shaped f16" "varied f16")
    limit=90
else
    device=(--device cpu) tolerance=()
    numerics=("e2b-shaped f32" "varied f32" "with-vision f32")
    limit=60
fi
runs=() nocuda=0
for entry in "${numerics[@]}"; do
    read -r model weights <<<"$entry"
    step "$limit" "$tmp/n.out" "$tmp/n.err" "$bin/hark" dump "${device[@]}" --weights "$weights" \
        --model "tests/fixtures/models/$model" --audio tests/fixtures/audio \
        --against "tests/fixtures/golden/$model" "${tolerance[@]}"
    rc=$?
    runs+=("$(json_or_error "$tmp/n.out" "$tmp/n.err" "$rc" "hark dump $model $weights")")
    if [ "$rc" -ne 0 ]; then
        failed+=("numerics:$model:$weights")
        if grep -q 'no cuda backend' "$tmp/n.err"; then
            say "these binaries were built without --features cuda; see the header of $0"
            nocuda=1
            break
        fi
    fi
done
{ printf '{"runs":['; (IFS=,; printf '%s' "${runs[*]}"); printf ']}\n'; } >"$out/numerics.json"

# ---- (b) stage timings ---------------------------------------------------------------------------
if [ "$mode" = cuda ]; then
    bench_base=(--backend cuda --config e2b --seconds 10 --runs 3 --decode-steps 32 --stream)
    main_weights=f16 extra_weights=(bf16 q8 q4) limit=200
else
    bench_base=(--config tiny --seconds 2 --runs 1 --decode-steps 8 --stream)
    main_weights=f32 extra_weights=(f16) limit=90
fi
benches=()
bench_one() { # weights
    step "$limit" "$tmp/b.out" "$tmp/b.err" "$bin/hark" bench "${bench_base[@]}" --weights "$1" --json
    local rc=$?
    benches+=("$(json_or_error "$tmp/b.out" "$tmp/b.err" "$rc" "hark bench $1")")
    [ "$rc" -eq 0 ] || failed+=("bench:$1")
}
((nocuda)) && extra_weights=() || bench_one "$main_weights"
for w in "${extra_weights[@]}"; do
    if [ "$mode" = cuda ]; then
        # A format the CUDA path lacks is refused at load; a quick tiny run tells, not a guess.
        if ! step 60 "$tmp/p.out" "$tmp/p.err" "$bin/hark" bench --backend cuda --config tiny \
            --seconds 2 --runs 1 --decode-steps 2 --weights "$w" --json; then
            benches+=("{\"weights\":\"$w\",\"supported\":false,\"reason\":$(json_str "$(tail -n 3 "$tmp/p.err")")}")
            continue
        fi
    fi
    bench_one "$w"
done
{ printf '{"runs":['; (IFS=,; printf '%s' "${benches[*]}"); printf ']}\n'; } >"$out/bench.json"

# ---- (c) concurrent real-time streams ---------------------------------------------------------
if [ "$mode" = cuda ]; then
    lb_model=synthetic:e2b lb_batch=${batch:-16} lb_max=${max_streams:-512} lb_seconds=${seconds:-12}
    lb_args=(--device cuda --weights f16)
    # What is left of the 8 minutes, at least 2.
    limit=$((460 - $(elapsed)))
    ((limit >= 120)) || limit=120
else
    lb_model=synthetic:tiny lb_batch=${batch:-4} lb_max=${max_streams:-2} lb_seconds=${seconds:-3}
    lb_args=(--device cpu)
    limit=120
fi
if ((nocuda)); then
    echo "skipped: binaries without cuda" >"$tmp/l.err"
    : >"$tmp/l.out"
    rc=1
else
    # The panic message (with harkd's log) is what matters, not a backtrace.
    step "$limit" "$tmp/l.out" "$tmp/l.err" env RUST_BACKTRACE=0 "$bin/hark-loadbench" \
        --model "$lb_model" --max-streams "$lb_max" --seconds "$lb_seconds" \
        --out "$out/loadbench.json" --harkd-args "${lb_args[@]}" --batch "$lb_batch"
    rc=$?
fi
cat "$tmp/l.out" >>"$log"
if [ ! -s "$out/loadbench.json" ]; then
    printf '{"complete":false,"error":%s}\n' "$(json_str "$(tail -n 20 "$tmp/l.err")")" >"$out/loadbench.json"
fi
# A bisection cut short by the time limit still counts: its rounds are in the file.
[ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || failed+=("loadbench")
sustained=$(grep -o '"sustained_streams": *[0-9]*' "$out/loadbench.json" | head -n 1 | grep -o '[0-9]*$')

# ---- summary ------------------------------------------------------------------------------------
ok=true
((${#failed[@]} == 0)) || ok=false
printf '{"mode":"%s","ok":%s,"failed":[%s],"sustained_streams":%s,"loadbench_exit_status":%d,"seconds":%d,"files":["env.json","numerics.json","bench.json","loadbench.json","summary.json","check.log"]}\n' \
    "$mode" "$ok" "$(sep=""; for f in "${failed[@]}"; do printf '%s%s' "$sep" "$(json_str "$f")"; sep=,; done)" \
    "${sustained:-null}" "$rc" "$(elapsed)" >"$out/summary.json"
say "done: ok=$ok${failed[*]:+ (failed: ${failed[*]})}, sustained streams ${sustained:-?}, ${out}"
rm -rf "$tmp"
[ -z "$bundle" ] || rm -rf "$bin"
$ok || exit 1
