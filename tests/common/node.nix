# A NixOS module for every VM test node: the flake's modules with the agent
# enabled, a vTPM whose EK carries a certificate from the test EK CA
# (ek-ca.nix), and the tools the test scripts call.
#
# Every node of tests/<scenario>.nix imports it (tests/common/default.nix).
{ self, ekCa }:
{ lib, pkgs, ... }:
{
  imports = [ self.nixosModules.default ];

  services.xnode.agent.enable = true;

  virtualisation = {
    memorySize = lib.mkDefault 2048;
    cores = lib.mkDefault 2;
    tpm = {
      enable = true;
      inherit (ekCa) provisioning;
    };
  };

  # xnode-agent itself is there through the agent's module.
  environment.systemPackages = [
    pkgs.curl
    pkgs.jq
    pkgs.tpm2-tools
  ];
}
