#!/usr/bin/env bash
# Installs Hark for one user: the `hark` and `harkd` binaries, ~/.config/hark, the systemd user
# units (harkd, hark-dictate) pointing at the installed binaries, shell completions and man
# pages. Nothing needs root.
#
#   tools/install.sh                     # cargo install both into ~/.local (bin/, share/)
#   tools/install.sh --prefix /opt/hark  # elsewhere
#   tools/install.sh --binaries target/release   # copy binaries already built
#
# Then: systemctl --user enable --now harkd    (and hark-dictate, for dictation)
set -euo pipefail

usage() {
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

repo=$(cd "$(dirname "$0")/.." && pwd)
prefix="$HOME/.local"
binaries=""
while (($#)); do
    case "$1" in
        --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
        --binaries) binaries=${2:?--binaries needs a directory}; shift 2 ;;
        -h | --help) usage 0 ;;
        *) echo "install.sh: unknown argument $1" >&2; usage 2 >&2 ;;
    esac
done
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
bin="$prefix/bin"
config="${XDG_CONFIG_HOME:-$HOME/.config}"
say() { printf 'install.sh: %s\n' "$*"; }

# 1. The binaries.
if [ -n "$binaries" ]; then
    for program in hark harkd; do
        [ -x "$binaries/$program" ] || { echo "install.sh: no $binaries/$program" >&2; exit 1; }
        install -Dm0755 "$binaries/$program" "$bin/$program"
    done
    say "copied hark and harkd from $binaries to $bin"
else
    say "building and installing hark and harkd into $bin (cargo install, about 13 minutes on 2 cores)"
    cargo install --locked --path "$repo/daemon" --root "$prefix"
    cargo install --locked --path "$repo/clients" --root "$prefix"
fi

# 2. Configuration: the directory the units read their optional settings from.
mkdir -p "$config/hark"
if [ ! -e "$config/hark/harkd.env" ]; then
    cat >"$config/hark/harkd.env" <<'ENV'
# harkd settings for the user service, as HARKD_<NAME>=value (see `harkd --help`), e.g.
# HARKD_MODEL=google/gemma-4-E2B-it
ENV
fi
if [ ! -e "$config/hark/dictate.env" ]; then
    cat >"$config/hark/dictate.env" <<'ENV'
# hark dictate settings for the user service: HARK_SERVER, HARK_TOKEN, HARK_INJECTOR, HARK_DEVICE
ENV
fi
say "settings in $config/hark (harkd.env, dictate.env)"

# 3. systemd user units, with ExecStart naming the installed binaries.
units="$config/systemd/user"
mkdir -p "$units"
sed "s|^ExecStart=%h/.local/bin/harkd|ExecStart=$bin/harkd|" \
    "$repo/daemon/systemd/harkd-user.service" >"$units/harkd.service"
sed "s|^ExecStart=%h/.local/bin/hark |ExecStart=$bin/hark |" \
    "$repo/clients/systemd/hark-dictate.service" >"$units/hark-dictate.service"
grep -q "^ExecStart=$bin/harkd" "$units/harkd.service"
grep -q "^ExecStart=$bin/hark dictate" "$units/hark-dictate.service"
say "systemd user units in $units (harkd.service, hark-dictate.service)"
if command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
    systemctl --user daemon-reload
fi

# 4. Shell completions and man pages, generated from the binaries' own flag definitions.
share="$prefix/share"
for program in hark harkd; do
    "$bin/hark" completions bash --program "$program" \
        | install -Dm0644 /dev/stdin "$share/bash-completion/completions/$program"
    "$bin/hark" completions zsh --program "$program" \
        | install -Dm0644 /dev/stdin "$share/zsh/site-functions/_$program"
    "$bin/hark" completions fish --program "$program" \
        | install -Dm0644 /dev/stdin "$share/fish/vendor_completions.d/$program.fish"
    "$bin/hark" man --program "$program" --out-dir "$share/man/man1"
done
say "completions in $share/{bash-completion,zsh,fish}, man pages in $share/man/man1"

case ":$PATH:" in
    *":$bin:"*) ;;
    *) say "note: $bin is not on PATH; add it (e.g. in ~/.profile: PATH=\"$bin:\$PATH\")" ;;
esac
say "done. Start the daemon with: systemctl --user enable --now harkd"
