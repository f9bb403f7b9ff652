# Hardware profiles, by name; the flake exposes each as
# nixosModules.hardware-<name>. Each is a plain NixOS module.
{
  generic-x86_64 = ./generic-x86_64.nix;
  nvidia = ./nvidia.nix;
  qemu-guest = ./qemu-guest.nix;
  cloud = ./cloud.nix;
  disko-single-disk = ./disko/single-disk.nix;
  disko-multi-disk = ./disko/multi-disk.nix;
}
