# Shared by the scripts in scripts/: package installation and messages.
# Sourced, not run.

say() { printf '==> %s\n' "$*" >&2; }

# Install the Debian packages given, if any is missing. Needs root (or
# sudo); without either it says what to install and goes on.
ensure_packages() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
      sudo=(sudo)
    else
      say "missing packages: ${missing[*]} (not root and no sudo: install them yourself)"
      return 0
    fi
  fi
  say "installing: ${missing[*]}"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# rustfmt and clippy come with rustup's default profile; add them if not.
ensure_rust_components() {
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 && rustup component add rustfmt clippy
  fi
}

# The system packages the agent and its tests use.
AGENT_PACKAGES=(pkg-config libtss2-dev swtpm swtpm-tools tpm2-tools iproute2)

# Manufacture a software TPM in directory $1 the way a vendor would: EKs
# persisted, EK certificates in NV, signed by a CA made here. The CA's
# certificates end up in $1/ek-ca.pem.
manufacture_swtpm() {
  local d=$1
  mkdir -p "$d/state" "$d/ca"
  cat >"$d/localca.conf" <<CONF
statedir = $d/ca
signingkey = $d/ca/signkey.pem
issuercert = $d/ca/issuercert.pem
certserial = $d/ca/certserial
CONF
  printf -- '--platform-manufacturer Xnode\n--platform-version 2.1\n--platform-model QEMU\n' >"$d/localca.options"
  cat >"$d/swtpm_setup.conf" <<CONF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $d/localca.conf
create_certs_tool_options = $d/localca.options
active_pcr_banks = sha256
CONF
  swtpm_setup --tpm2 --createek --create-ek-cert --create-platform-cert --overwrite \
    --tpmstate "$d/state" --config "$d/swtpm_setup.conf" >"$d/setup.log" 2>&1 ||
    { cat "$d/setup.log" >&2; return 1; }
  cat "$d/ca/swtpm-localca-rootca-cert.pem" "$d/ca/issuercert.pem" >"$d/ek-ca.pem"
}

# Start a swtpm on free loopback ports over the TPM state in $1/state;
# prints the TCTI.
start_swtpm() {
  local d=$1 port
  mkdir -p "$d/state"
  for _ in $(seq 200); do
    port=$((20000 + RANDOM % 40000))
    # Both ports free: nothing accepts a connection on either.
    if ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null &&
       ! (exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null; then
      break
    fi
  done
  swtpm socket --tpm2 --flags not-need-init,startup-clear \
    --tpmstate dir="$d/state" \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 \
    --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 \
    --pid file="$d/swtpm.pid" --daemon
  # swtpm opens its control socket before the TPM socket: wait for both.
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/$((port + 1))) 2>/dev/null &&
      (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    sleep 0.05
  done
  echo "swtpm:host=127.0.0.1,port=$port"
}

stop_swtpm() {
  local d=$1
  [ -f "$d/swtpm.pid" ] && kill "$(cat "$d/swtpm.pid")" 2>/dev/null || true
}
