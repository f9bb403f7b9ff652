# Scenario 1: a node proves what it is. It boots with a vTPM
# (`virtualisation.tpm.enable`), its probe finds the TPM, it attests with a
# nonce the verifier chose, and the test driver, as an offline verifier with
# nothing but the flake's xnode-agent, accepts the envelope: node signature,
# TPM quote, PCR digest, the EK certificate chained to the (test) EK CA, the
# AK bound to that EK by credential activation, and the nonce. The same
# envelope is rejected for another nonce, for an EK CA the verifier does not
# trust, and as a replay once a newer one was seen.
#
# The EK certificate is the test's own (tests/common/ek-ca.nix): NixOS' swtpm
# has none. It shows the plumbing (the agent reads NV 0x01c00002, the verifier
# checks the chain and that it certifies the quoted EK), not that a TPM is
# genuine; the probe and the report say "software TPM" throughout.
{ pkgs, self, ... }:
let
  common = import ./common { inherit pkgs self; };
in
pkgs.testers.runNixOSTest {
  name = "xnode-attest";

  nodes.machine = common.node;

  globalTimeout = 900;

  testScript =
    common.attestPy
    + ''
      NONCE = "5eed0f1ce5a1e7a7105bcafe0123456789abcdef0011223344556677deadbeef"
      OTHER_NONCE = "00112233445566778899aabbccddeeff0123456789abcdef5eed0f1ce5a1e7a7"

      start_all()
      machine.wait_for_unit("multi-user.target")
      machine.wait_for_unit("xnode-agent.service")
      # The first-boot identity (xnode-identity.service) before anything else
      # touches the state directory.
      machine.wait_until_succeeds(f"test -s {STATE_DIR}/node.key", timeout=120)
      # The periodic attestation would run at a random time in the middle of
      # this test; it is started by hand at the end instead.
      machine.succeed("systemctl stop xnode-attest.timer xnode-attest.service")

      with subtest("the probe finds the vTPM, and says it is a software TPM"):
          inventory = json.loads(machine.succeed("xnode-agent probe --json --only tpm"))
          tpm = inventory["tpm"].get("ok")
          assert tpm is not None, f"the probe could not read the TPM: {inventory['tpm']}"
          assert tpm["present"], f"no TPM found: {tpm}"
          assert tpm["version"] == "2.0", f"not a TPM 2.0: {tpm}"
          assert tpm["unreachable"] is None, f"the TPM did not answer: {tpm['unreachable']}"
          assert "/dev/tpmrm0" in tpm["device_nodes"], f"no resource manager: {tpm}"
          assert tpm["software"], f"swtpm must be reported as a software TPM: {tpm}"

      with subtest("the vTPM holds the provisioned EK and its certificate"):
          machine.succeed(
              "tpm2_getcap -T device:/dev/tpmrm0 handles-persistent | grep -qi 0x81010001",
              "tpm2_getcap -T device:/dev/tpmrm0 handles-nv-index | grep -qi 0x1c00002",
          )

      with subtest("the node attests with the verifier's nonce"):
          envelope, attest_log = attest(machine, NONCE, "envelope.json")
          assert "SOFTWARE TPM" in attest_log, f"attest must warn about the software TPM: {attest_log}"
          assert "no EK certificate" not in attest_log, f"attest found no EK certificate: {attest_log}"
          peer_id = node_peer_id(machine)

      with subtest("before activation the verifier accepts everything but the AK"):
          code, result = verify(envelope, "--ek-ca", EK_CA, "--nonce", NONCE)
          assert code == 1, f"an AK never activated must be rejected: {describe(result)}"
          assert failed(result) == ["ak_activation"], describe(result)
          assert statuses(result)["ek_certificate"] == "pass", describe(result)

      with subtest("credential activation binds the AK to the certified EK"):
          registry = activate(machine, envelope)

      with subtest("the verifier on the driver accepts the envelope"):
          code, result = verify(
              envelope, "--ek-ca", EK_CA, "--activations", str(registry), "--nonce", NONCE
          )
          assert_verified(result, code)
          assert result["node_id"] == peer_id, f"{result['node_id']} is not the node's {peer_id}"
          assert result["software_tpm"] is True, "the report must say the TPM is software"
          first_sequence = int(result["sequence"])

      with subtest("the same envelope is rejected for another nonce"):
          code, result = verify(
              envelope, "--ek-ca", EK_CA, "--activations", str(registry), "--nonce", OTHER_NONCE
          )
          assert code == 1 and not result["ok"], f"a foreign nonce was accepted: {describe(result)}"
          assert failed(result) == ["freshness"], describe(result)

      with subtest("the EK is trusted only through the CA the verifier chose"):
          code, result = verify(
              envelope, "--ek-ca", EK_CA_IMPOSTOR, "--activations", str(registry), "--nonce", NONCE
          )
          assert code == 1, f"a CA that did not sign the EK certificate was accepted: {describe(result)}"
          assert failed(result) == ["ek_certificate"], describe(result)
          code, result = verify(envelope, "--activations", str(registry), "--nonce", NONCE)
          assert code == 1, f"no EK CA given, yet accepted: {describe(result)}"
          assert failed(result) == ["ek_certificate"], describe(result)

      with subtest("a newer attestation verifies; the older one replayed does not"):
          newer, _ = attest(machine, OTHER_NONCE, "envelope-2.json")
          minimum = str(first_sequence + 1)
          code, result = verify(
              newer, "--ek-ca", EK_CA, "--activations", str(registry),
              "--nonce", OTHER_NONCE, "--min-sequence", minimum,
          )
          assert_verified(result, code)
          code, result = verify(
              envelope, "--ek-ca", EK_CA, "--activations", str(registry),
              "--nonce", NONCE, "--min-sequence", minimum,
          )
          assert code == 1, f"a replayed older report was accepted: {describe(result)}"
          assert failed(result) == ["sequence"], describe(result)

      with subtest("the periodic attestation unit writes an envelope that verifies"):
          machine.succeed(
              "systemctl start xnode-attest.service"
              " || { journalctl -u xnode-attest.service --no-pager -n 20; exit 1; }"
          )
          periodic = fetch(machine, f"{STATE_DIR}/attestation.json")
          code, result = verify(
              periodic, "--ek-ca", EK_CA, "--activations", str(registry), "--max-age", "600"
          )
          assert_verified(result, code)
          shown = json.loads(machine.succeed("xnode-agent status --json"))["attestation"]
          assert shown is not None and shown.get("error") is None, f"the agent shows {shown}"
          assert shown["sequence"] == result["sequence"], f"the agent shows {shown}"
          assert shown["node_id"] == peer_id, f"the agent shows {shown}"
    '';
}
