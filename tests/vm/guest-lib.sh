# Sourced by test scripts inside the guest: results go to the serial
# console as "XNODE-VMTEST PASS|FAIL <name> <detail>".
out=/dev/ttyS0
say() { echo "XNODE-VMTEST $*" >"$out"; echo "XNODE-VMTEST $*" >>/tmp/xnode-results; }
# check NAME REGEX COMMAND...: PASS when the command's output matches.
check() {
  local name=$1 want=$2; shift 2
  local got
  got=$("$@" 2>&1); local rc=$?
  got=${got//$'\n'/ }
  # The whole output decides; the console gets enough to read.
  local shown=${got:0:400}; [ ${#got} -gt 400 ] && shown="$shown …"
  if [[ "$got" =~ $want ]]; then say PASS "$name" "rc=$rc $shown"; else say FAIL "$name" "rc=$rc $got"; fi
}
# wait_for SECONDS COMMAND...: until the command succeeds; 1 on timeout.
wait_for() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$deadline" ] && return 1
    sleep 0.1
  done
}
