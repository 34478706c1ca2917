#!/usr/bin/env bash
# Installs the system packages Hark's build and tests need on Debian or Ubuntu, saying what it
# installs (with sudo when not root); does nothing when they are all there. The README's two
# commands run it first:
#   tools/test-deps.sh --build && cargo run --release --bin hark -- transcribe …   (build only)
#   tools/test-deps.sh && cargo test --release --workspace                         (everything)
#
#   pkg-config libasound2-dev  cpal's ALSA bindings (microphone capture) build against them
#   espeak-ng sox              tests synthesise and convert speech
#   tmux                       `hark captions` is checked in a real terminal (capture-pane)
#   chromium                   the captions web page is checked in a headless browser
#   python3-venv               the OpenAI and Wyoming Python clients run in target/test-venv
#                              (tests/src/python.rs fetches the packages from PyPI itself)
set -euo pipefail

packages=(pkg-config libasound2-dev espeak-ng sox tmux chromium python3-venv)
case "${1:-}" in
    --build) packages=(pkg-config libasound2-dev) ;;
    "") ;;
    *) echo "usage: tools/test-deps.sh [--build]" >&2; exit 2 ;;
esac

if ! command -v dpkg >/dev/null || ! command -v apt-get >/dev/null; then
    echo "test-deps.sh: not a Debian or Ubuntu system; install the equivalents of: ${packages[*]}" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
# Ubuntu ships the browser as chromium-browser; either one does.
if [[ " ${missing[*]} " == *" chromium "* ]] && dpkg -s chromium-browser >/dev/null 2>&1; then
    missing=("${missing[@]/chromium/}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]} == 0)); then
    echo "test-deps.sh: all system packages present (${packages[*]})"
    exit 0
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "test-deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
    sudo_cmd=(sudo)
fi
echo "test-deps.sh: installing ${missing[*]} (apt-get${sudo_cmd:+, with sudo})"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
