# The generic server: x86_64, one disk (disko), installed from the USB
# image or with nixos-anywhere.
{
  imports = [
    ./common.nix
    ../hardware/generic-x86_64.nix
    ../hardware/disko/single-disk.nix
  ];

  nixpkgs.hostPlatform = "x86_64-linux";
}
