# What the VM tests (tests/<scenario>.nix) share:
#   node      the NixOS module of every test node (node.nix)
#   ekCa      the test EK CA and the vTPM provisioning that uses it (ek-ca.nix)
#   agent     the flake's xnode-agent, run by the test driver as the verifier
#   attestPy  Python for the test scripts: attest on a node, exchange the
#             credential, verify on the driver (attest.py)
{ pkgs, self }:
let
  agent = self.packages.${pkgs.stdenv.hostPlatform.system}.xnode-agent;
  ekCa = import ./ek-ca.nix { inherit pkgs; };
in
{
  inherit agent ekCa;
  node = import ./node.nix { inherit self ekCa; };
  attestPy = ''
    XNODE_AGENT = "${agent}/bin/xnode-agent"
    EK_CA = "${ekCa.caFile}"
    EK_CA_IMPOSTOR = "${ekCa.impostorFile}"
  ''
  + builtins.readFile ./attest.py;
}
