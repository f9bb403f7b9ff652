# Single-disk layout (disko), GPT on xnode.disks.main:
#
#   bios  1 MiB  BIOS boot partition (EF02): GRUB's core on BIOS-booting
#                clouds (hardware/cloud.nix); unused with systemd-boot
#   ESP   1 GiB  vfat, /boot: systemd-boot or GRUB, kernels, initrds
#   root  rest   ext4, /
#
# Filesystems are mounted by GPT partition label (disk-main-ESP,
# disk-main-root), so the disk may change names between boots.
{ config, lib, ... }:
let
  cfg = config.xnode.disks;
in
{
  options.xnode.disks.main = lib.mkOption {
    type = lib.types.str;
    default = "/dev/sda";
    example = "/dev/disk/by-id/nvme-SAMSUNG_MZQL23T8HCLS-00A07_S64HNE0T000000";
    description = ''
      The system disk (ESP and root); installing erases it. At install time
      `xnode-install --disk DEVICE` (and disko-install's `--disk main
      DEVICE`) override this value; nixos-anywhere uses it as it is, so set
      it for the target host (e.g. /dev/vda on KVM clouds, /dev/nvme0n1 on
      EC2 Nitro), preferably as a stable /dev/disk/by-id/ name.
    '';
  };

  config.disko.devices.disk.main = {
    type = "disk";
    device = cfg.main;
    content = {
      type = "gpt";
      partitions = {
        bios = {
          size = "1M";
          type = "EF02";
          priority = 1;
        };
        ESP = {
          size = "1G";
          type = "EF00";
          priority = 2;
          content = {
            type = "filesystem";
            format = "vfat";
            mountpoint = "/boot";
            # The ESP holds the boot loader's random seed: root only.
            mountOptions = [ "umask=0077" ];
          };
        };
        root = {
          size = "100%";
          content = {
            type = "filesystem";
            format = "ext4";
            mountpoint = "/";
          };
        };
      };
    };
  };
}
