# What the VM tests (tests/<scenario>.nix) share:
#   node      the NixOS module of every test node (node.nix)
#   ekCa      the test EK CA and the vTPM provisioning that uses it (ek-ca.nix)
#   agent     the flake's xnode-agent, run by the test driver as the verifier
#   staticAddress  a module fixing a node's test-network address (eth1, /24)
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
  # The driver's vlan 1 gives 192.168.1.N in node order; tests that write
  # peers' addresses into configuration fix them so they cannot drift.
  staticAddress =
    address:
    { lib, ... }:
    {
      networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
        {
          inherit address;
          prefixLength = 24;
        }
      ];
    };
  attestPy = ''
    XNODE_AGENT = "${agent}/bin/xnode-agent"
    EK_CA = "${ekCa.caFile}"
    EK_CA_IMPOSTOR = "${ekCa.impostorFile}"
  ''
  + builtins.readFile ./attest.py;
}
