# The appliance as a QEMU guest. `nix run .#vm` boots it with a software
# TPM (swtpm), the same way the VM tests do.
{
  imports = [
    ./common.nix
    ../hardware/qemu-guest.nix
    ../hardware/disko/single-disk.nix
  ];

  nixpkgs.hostPlatform = "x86_64-linux";
  networking.hostName = "xnode-vm";
  xnode.disks.main = "/dev/vda";
  # Installed on a VM's disk it boots like a server (UEFI); `nix run .#vm`
  # boots the kernel directly and ignores this.
  boot.loader.systemd-boot.enable = true;
  boot.loader.efi.canTouchEfiVariables = false;

  virtualisation.vmVariant = {
    virtualisation = {
      tpm.enable = true;
      memorySize = 4096;
      cores = 4;
      diskSize = 16384;
      graphics = false;
      # The agent's API and kubo's gateway stay on the guest's loopback;
      # SSH is reachable on the host's port 2222.
      forwardPorts = [
        {
          from = "host";
          host.port = 2222;
          guest.port = 22;
        }
      ];
    };
    # The VM has no first-boot medium; the agent runs without an owner key.
    services.xnode.firstboot.enable = false;
  };
}
