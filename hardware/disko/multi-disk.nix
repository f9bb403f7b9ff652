# Multi-disk layout (disko): the system on xnode.disks.main exactly as in
# single-disk.nix, and the node's state (services.xnode.agent.stateDir,
# /var/lib/xnode: keys, CometBFT, IPFS) on an mdadm array over every disk
# in xnode.disks.data:
#
#   dataN   one GPT partition (100%) each, members of the array
#   /dev/md/xnode-data   RAID level xnode.disks.dataLevel, ext4, at stateDir
#
# The state volume is not `nofail`: a node whose array does not assemble
# stops at boot rather than start with an empty /var/lib/xnode and mint a
# new identity.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.xnode.disks;
  stateDir = config.services.xnode.agent.stateDir or "/var/lib/xnode";
  count = builtins.length cfg.data;
  # mdadm's minimum number of members per level (1 with --force, which disko uses).
  minimum = {
    "0" = 1;
    "1" = 1;
    "4" = 3;
    "5" = 3;
    "6" = 4;
    "10" = 2;
  };
in
{
  imports = [ ./single-disk.nix ];

  options.xnode.disks = {
    data = lib.mkOption {
      type = lib.types.listOf lib.types.str;
      default = [ ];
      example = [
        "/dev/disk/by-id/nvme-data-a"
        "/dev/disk/by-id/nvme-data-b"
      ];
      description = ''
        Data disks, in order (disko names them data0, data1, ...), that
        together hold the node's state directory; installing erases them.
        `xnode-install --data DEVICE` (once per disk, in this order) and
        disko-install's `--disk dataN DEVICE` override them at install time.
      '';
    };
    dataLevel = lib.mkOption {
      type = lib.types.enum [
        0
        1
        4
        5
        6
        10
      ];
      default = 1;
      description = ''
        RAID level of the data array: 1 mirrors every disk (capacity of
        one, survives all but one failing), 0 stripes (all the capacity, no
        redundancy), 5/6 keep one/two disks' worth of parity (3/4 disks at
        least), 10 stripes mirrors.
      '';
    };
  };

  config = {
    assertions = [
      {
        assertion = cfg.data != [ ];
        message = ''
          hardware/disko/multi-disk.nix is imported, but xnode.disks.data is
          empty, so there is no data volume for ${stateDir}. List the data disks,
          e.g. xnode.disks.data = [ "/dev/disk/by-id/..." "/dev/disk/by-id/..." ];
          (`ls -l /dev/disk/by-id/` on the host names them), or use
          hardware/disko/single-disk.nix (nixosModules.hardware-disko-single-disk) instead.
        '';
      }
      {
        assertion = cfg.data == [ ] || count >= minimum.${toString cfg.dataLevel};
        message = ''
          xnode.disks.dataLevel = ${toString cfg.dataLevel} needs at least ${
            toString minimum.${toString cfg.dataLevel}
          } data disks, but xnode.disks.data lists ${toString count}:
          add disks, or choose a level they allow (1 mirrors, 0 stripes).
        '';
      }
      {
        assertion = !(builtins.elem cfg.main cfg.data);
        message = ''
          xnode.disks.main (${cfg.main}) is also in xnode.disks.data: the system
          disk cannot be a member of the data array; remove it from the list.
        '';
      }
    ];

    disko.devices = {
      disk = lib.listToAttrs (
        lib.imap0 (
          i: device:
          lib.nameValuePair "data${toString i}" {
            type = "disk";
            inherit device;
            content = {
              type = "gpt";
              partitions.data = {
                size = "100%";
                type = "FD00"; # Linux RAID
                content = {
                  type = "mdraid";
                  name = "xnode-data";
                };
              };
            };
          }
        ) cfg.data
      );
      mdadm.xnode-data = {
        type = "mdadm";
        level = cfg.dataLevel;
        content = {
          type = "filesystem";
          format = "ext4";
          mountpoint = stateDir;
        };
      };
    };

    # mdadm's monitor needs somewhere to report events (NixOS warns
    # otherwise): send them to the journal.
    boot.swraid.mdadmConf = lib.mkDefault "PROGRAM ${pkgs.util-linux}/bin/logger";
  };
}
