# What every Xnode runs, whatever the hardware: the agent (first-boot
# identity, attestation timer), IPFS, the first-boot configuration, and a
# locked-down base system. CometBFT and the mesh are switched on per node
# (docs/operator.md).
{ lib, ... }:
{
  imports = [ ../images ];

  system.stateVersion = "26.05";

  services.xnode.agent.enable = true;
  services.xnode.ipfs.enable = true;
  services.xnode.firstboot.enable = true;

  networking.hostName = lib.mkDefault "xnode";
  networking.useNetworkd = true;
  networking.firewall.enable = true;

  # Operators reach the node with SSH keys only (nixos-anywhere, updates).
  services.openssh = {
    enable = true;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
    };
  };

  nix.settings = {
    experimental-features = [
      "nix-command"
      "flakes"
    ];
    # Only root and wheel may talk to the daemon.
    allowed-users = [ "@wheel" ];
  };

  # Old generations stay bootable for rollback (the hardware profile bounds
  # how many the boot menu lists); the store keeps a month of them.
  nix.gc = {
    automatic = true;
    options = "--delete-older-than 30d";
  };
}
