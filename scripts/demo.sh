#!/usr/bin/env bash
# devinst doing its job, from nothing: installs devinst with cargo, starts a
# local engine when none answers (as root on Debian: scripts/test-env.sh),
# makes a small demo repository with two worktrees, sets both up and starts
# them, runs a shim in each, and prints their ports and what to try next.
# The instances are left running to explore; the end says how to remove them.
#
# Usage: bash scripts/demo.sh
#   DEVINST_DEMO_DIR   where the demo repository goes (default ~/devinst-demo)
#   DEVINST_DEMO_DEBUG=1 installs the debug build (quicker to build; CI)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEMO=${DEVINST_DEMO_DIR:-$HOME/devinst-demo}
BIN=${CARGO_HOME:-$HOME/.cargo}/bin

say() { printf '\n== %s\n' "$*"; }

say "1. devinst, built and installed with cargo"
command -v cargo >/dev/null || {
    echo "cargo is missing: install Rust first (https://rustup.rs), then run this again" >&2
    exit 1
}
profile=()
[[ ${DEVINST_DEMO_DEBUG:-} == 1 ]] && profile=(--debug)
# The repository's own target directory: a build made before is reused.
CARGO_TARGET_DIR=$ROOT/target cargo install --quiet --locked --force "${profile[@]}" --path "$ROOT"
export PATH=$BIN:$PATH
devinst --version

say "2. a container engine"
if devinst doctor >/dev/null 2>&1; then
    echo "an engine answers"
elif [[ $(id -u) -eq 0 && -r /etc/debian_version ]]; then
    echo "no engine answers: starting Docker (scripts/test-env.sh)"
    bash "$ROOT/scripts/test-env.sh" </dev/null
else
    echo "no engine answers: install and start Docker (or Podman's API service), then run this again" >&2
    devinst doctor || true
    exit 1
fi

say "3. a demo repository with two worktrees: $DEMO and $DEMO-feature"
if [[ ! -d $DEMO/.git ]]; then
    mkdir -p "$DEMO"
    cd "$DEMO"
    git init -q -b main
    cat >devinst.toml <<'TOML'
# The demo's recipe: the default image, one setup step, one shim.
[setup]
commands = ["date -u +'set up at %H:%M:%S UTC' > /app/.sky-dev/state/setup.txt"]

[shims]
demo-hello = ["sh", "/app/hello.sh"]
TOML
    cat >hello.sh <<'SH'
# Runs inside the instance: which container, which worktree's code.
echo "hello from container $(hostname), running $(cat /app/WHICH) ($(cat /app/.sky-dev/state/setup.txt))"
SH
    echo "the main branch" >WHICH
    git add .
    git -c user.name=demo -c user.email=demo@example.com commit -q -m "devinst demo"
    git worktree add -q -b feature "$DEMO-feature"
    echo "the feature branch" >"$DEMO-feature/WHICH"
fi

say "4. both set up, started, and a shim run in each"
for tree in "$DEMO" "$DEMO-feature"; do
    cd "$tree"
    devinst -q setup
    devinst start
    .sky-dev/bin/demo-hello
done

say "5. two instances, each with its own container and port"
devinst list

cat <<NEXT

What to try next:
  cd $DEMO-feature && source .sky-dev/bin/activate   # shims on PATH, DEVINST_* set
  demo-hello                                          # runs inside this worktree's container
  echo 'echo edited live' >> hello.sh && demo-hello   # the worktree is mounted live at /app
  devinst status; devinst shell; devinst logs
  devinst serve                                       # the HTTP API and dashboard
When done: devinst destroy --purge --yes in both worktrees, then rm -rf $DEMO $DEMO-feature
NEXT
