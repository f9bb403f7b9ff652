# Attestation helpers for the VM test scripts (tests/attest.nix,
# tests/recovery.nix). The node attests with its TPM; the test driver (the
# "host") plays the verifier with the flake's xnode-agent, which needs no
# TPM and trusts nothing from the node but the envelope.
#
# tests/common/default.nix puts three names before this file:
#   XNODE_AGENT     the flake's xnode-agent on the driver
#   EK_CA           the test EK CA (tests/common/ek-ca.nix)
#   EK_CA_IMPOSTOR  a CA with the same subject and another key
import base64
import json
import subprocess
from pathlib import Path
from typing import Any

NODE_AGENT = "/run/current-system/sw/bin/xnode-agent"
STATE_DIR = "/var/lib/xnode"
VM_EVIDENCE = "/tmp/xnode-evidence"
# The checks a fully verified envelope passes (docs/attestation.md, "Checks").
REQUIRED_CHECKS = [
    "envelope",
    "report",
    "node_identity",
    "node_signature",
    "quote_structure",
    "ak_attributes",
    "quote_signature",
    "binding",
    "pcr_digest",
    "ek_certificate",
    "ak_activation",
    "freshness",
]


def node_agent(args: str) -> str:
    """A shell command running the node's xnode-agent as the agent and its
    attestation unit run: as root (modules/agent.nix). No stdin: the test
    driver talks to the node's shell over it."""
    return f"{NODE_AGENT} {args} </dev/null"


def host_agent(*args: str) -> "subprocess.CompletedProcess[str]":
    """Run xnode-agent on the test driver and log what it said."""
    result = subprocess.run([XNODE_AGENT, *args], capture_output=True, text=True)
    print(
        f"(driver) xnode-agent {' '.join(args)}: exit {result.returncode}\n"
        f"{result.stdout}{result.stderr}"
    )
    return result


def evidence_dir(machine: Any) -> Path:
    """Where the driver keeps envelopes and exchange files: $out/evidence,
    so they stay with the test's result."""
    path = Path(machine.out_dir) / "evidence"
    path.mkdir(parents=True, exist_ok=True)
    return path


def fetch(machine: Any, vm_path: str) -> Path:
    """Copy a file from the node to the driver's evidence directory."""
    # copy_from_vm was renamed copy_from_machine in newer test drivers.
    copy = getattr(machine, "copy_from_machine", None) or machine.copy_from_vm
    copy(vm_path, "evidence")
    return evidence_dir(machine) / Path(vm_path).name


def attest(machine: Any, nonce: str, name: str) -> tuple[Path, str]:
    """Attest on the node with the verifier's nonce (hex); copy the envelope
    to the driver. Returns its path there and what attest said on stderr."""
    envelope = f"{VM_EVIDENCE}/{name}"
    machine.succeed(f"install -d -m 0755 {VM_EVIDENCE}")
    machine.succeed(
        node_agent(f"attest --nonce {nonce} --state-dir {STATE_DIR} --out -")
        + f" >{envelope} 2>{envelope}.log"
        + f" || {{ cat {envelope}.log; exit 1; }}"
    )
    log = machine.succeed(f"cat {envelope}.log")
    print(f"attest on {machine.name}: {log}")
    return fetch(machine, envelope), log


def node_peer_id(machine: Any) -> str:
    """The node's PeerId, from its own key."""
    out = machine.succeed(node_agent(f"identity --state-dir {STATE_DIR} --json"))
    return str(json.loads(out)["peer_id"])


def activate(machine: Any, envelope: Path) -> Path:
    """The credential exchange of docs/attestation.md: the driver challenges
    the (EK, AK) pair of the envelope, the node answers with its TPM
    (ActivateCredential), the driver records the pair. Returns the registry
    to pass to `verify --activations`."""
    work = evidence_dir(machine)
    challenge = work / "challenge.json"
    pending = work / "pending.json"
    registry = work / "activations.json"
    r = host_agent(
        "credential", "challenge", str(envelope),
        "--out", str(challenge), "--pending", str(pending),
    )
    assert r.returncode == 0, f"credential challenge failed: {r.stderr}"
    machine.copy_from_host(str(challenge), f"{VM_EVIDENCE}/challenge.json")
    machine.succeed(f"chmod 0644 {VM_EVIDENCE}/challenge.json")
    machine.succeed(
        node_agent(
            f"credential activate {VM_EVIDENCE}/challenge.json"
            f" --state-dir {STATE_DIR} --out -"
        )
        + f" >{VM_EVIDENCE}/response.json"
    )
    response = fetch(machine, f"{VM_EVIDENCE}/response.json")
    r = host_agent(
        "credential", "accept", str(pending), str(response),
        "--registry", str(registry),
    )
    assert r.returncode == 0, f"the node's answer to the challenge was refused: {r.stderr}"
    return registry


def verify(envelope: Path, *policy: str) -> tuple[int, dict[str, Any]]:
    """`xnode-agent verify --json` on the driver: the exit code and the result."""
    r = host_agent("verify", str(envelope), "--json", *policy)
    assert r.stdout.strip(), f"verify printed no result (exit {r.returncode}): {r.stderr}"
    return r.returncode, json.loads(r.stdout)


def statuses(result: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in result["checks"]}


def failed(result: dict[str, Any]) -> list[str]:
    return [c["name"] for c in result["checks"] if c["status"] == "fail"]


def describe(result: dict[str, Any]) -> str:
    """Every check as `name: status (detail)`, for assertion messages."""
    return "; ".join(
        f"{c['name']}: {c['status']} ({c['detail']})" for c in result["checks"]
    )


def assert_verified(result: dict[str, Any], code: int) -> None:
    assert code == 0 and result["ok"], f"the envelope was rejected: {describe(result)}"
    st = statuses(result)
    for name in REQUIRED_CHECKS:
        assert st.get(name) == "pass", f"check {name} is {st.get(name)}: {describe(result)}"


def tamper_report(envelope: Path, name: str) -> Path:
    """A copy of the envelope whose signed report differs in one byte: a hex
    digit of boot_id, so the report is still valid JSON of the same schema
    and the verifier reaches the signature checks."""
    env = json.loads(envelope.read_text())
    report = bytearray(base64.b64decode(env["payload"]))
    marker = b'"boot_id":"'
    at = report.find(marker)
    assert at >= 0, "the report has no boot_id to tamper with"
    at += len(marker)
    report[at] = ord("0") if report[at] != ord("0") else ord("1")
    env["payload"] = base64.b64encode(bytes(report)).decode()
    out = envelope.parent / name
    out.write_text(json.dumps(env))
    return out
