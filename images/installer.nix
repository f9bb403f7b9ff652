# The live USB/ISO installer (the `iso-installer` image variant of the
# configuration it installs; images/default.nix adds it). It boots a live
# system with `xnode-install`, which installs that configuration onto a
# disk with disko-install, entirely offline:
#
#   sudo xnode-install --disk /dev/nvme0n1 [--data /dev/sdb ...] [--config xnode.json]
#
# For that the ISO carries, in its Nix store (through
# system.extraDependencies): the flake's source (xnode.installer.flake)
# and all its inputs, so disko-install can evaluate
# `<flake>#<configuration>` without fetching anything; the target's
# system closure and disko script, so nothing needs building but the
# small disko script for the chosen disks; and what building that takes.
#
# First-boot configuration: the live system runs xnode-firstboot like a
# node does (a stick labelled XNODE, /iso/xnode.json from
# xnode.installer.firstbootFile); `xnode-install` copies what it found (or
# `--config FILE`) into the installed system's state directory. The live
# system runs no node services itself.
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  cfg = config.xnode.installer;
  # The installed configuration's facts, captured by images/default.nix
  # (the placeholder only lets the assertions below be reported).
  target =
    if cfg.target != null then
      cfg.target
    else
      {
        closure = [ ];
        diskNames = [ ];
        rootDevice = "";
        stateDir = "/var/lib/xnode";
        stateDevice = "";
      };
  # "${...}" (not toString) so that a path is copied into the store, and so into the ISO.
  flakeSource = if cfg.flake == null then "" else "${cfg.flake}";
  firstbootExe =
    if config.services.xnode.firstboot.package or null != null then
      lib.getExe config.services.xnode.firstboot.package
    else
      "";
  liveStateDir = config.services.xnode.firstboot.stateDir or "/var/lib/xnode";

  xnode-install = pkgs.writeShellApplication {
    name = "xnode-install";
    runtimeInputs = [
      cfg.disko
      config.system.build.nixos-install
      pkgs.coreutils
      pkgs.util-linux
      pkgs.mdadm
      config.systemd.package
    ];
    text = ''
      # Set when the ISO is built, from the configuration it installs.
      flake=${lib.escapeShellArg flakeSource}
      configuration=${lib.escapeShellArg cfg.configuration}
      disk_names=(${lib.escapeShellArgs target.diskNames})
      root_device=${lib.escapeShellArg target.rootDevice}
      state_dir=${lib.escapeShellArg target.stateDir}
      state_device=${lib.escapeShellArg target.stateDevice}
      firstboot=${lib.escapeShellArg firstbootExe}
      live_firstboot=${lib.escapeShellArg "${liveStateDir}/firstboot.json"}

      die() {
        echo "xnode-install: $*" >&2
        exit 1
      }

      usage() {
        cat <<USAGE
      usage: xnode-install [--disk DEVICE] [--data DEVICE]... [--config FILE] [--yes]
                           [--write-efi-boot-entries]

      Installs the Xnode configuration '$configuration' from this live system
      onto DEVICE with disko-install, offline. DEVICE and every --data disk are
      ERASED.

        --disk DEVICE   the system disk (ESP and root), e.g. /dev/nvme0n1;
                        asked for when missing
        --data DEVICE   a data disk for $state_dir, once per disk, in the order of
                        xnode.disks.data (multi-disk configurations only)
        --config FILE   first-boot configuration (xnode.json, xnode.firstboot/v1) to
                        install with the node; default: the one this live system
                        found when it booted (on a stick labelled XNODE, or in the ISO)
        --yes           do not ask before erasing
        --write-efi-boot-entries
                        also add a boot entry for the new disk to this machine's
                        firmware (NVRAM); not needed to boot it
      USAGE
      }

      disk=""
      data=()
      config=""
      yes=""
      efi_entries=""
      while [ $# -gt 0 ]; do
        case $1 in
          --disk)
            disk=''${2:?--disk needs a device}
            shift 2
            ;;
          --data)
            data+=("''${2:?--data needs a device}")
            shift 2
            ;;
          --config)
            config=''${2:?--config needs a file}
            shift 2
            ;;
          -y | --yes)
            yes=1
            shift
            ;;
          --write-efi-boot-entries)
            efi_entries=1
            shift
            ;;
          -h | --help)
            usage
            exit 0
            ;;
          *)
            usage >&2
            exit 2
            ;;
        esac
      done

      [ "$(id -u)" -eq 0 ] || die "run it as root: sudo xnode-install ..."

      # The disks the configuration defines: main, and data0, data1, ...
      expected_data=0
      for name in "''${disk_names[@]}"; do
        case $name in
          main) ;;
          data[0-9]*) expected_data=$((expected_data + 1)) ;;
          *) die "the configuration '$configuration' has a disk named '$name', which this script does not map; run disko-install --flake '$flake#$configuration' --disk NAME DEVICE ... for each of: ''${disk_names[*]}" ;;
        esac
      done

      interactive=""
      if [ -t 0 ]; then
        interactive=1
      fi

      if [ -z "$disk" ] || { [ "''${#data[@]}" -eq 0 ] && [ "$expected_data" -gt 0 ]; }; then
        [ -n "$interactive" ] || die "no --disk given, and no terminal to ask on: xnode-install --disk /dev/nvme0n1"
        echo "Disks on this machine:"
        lsblk -d -e 7,11 -o NAME,SIZE,TYPE,TRAN,MODEL,SERIAL
      fi
      if [ -z "$disk" ]; then
        read -r -p "System disk to install Xnode on (it is erased), e.g. /dev/nvme0n1: " disk
      fi
      if [ "''${#data[@]}" -eq 0 ] && [ "$expected_data" -gt 0 ]; then
        for ((i = 0; i < expected_data; i++)); do
          read -r -p "Data disk $((i + 1)) of $expected_data for $state_dir (it is erased): " d
          data+=("$d")
        done
      fi

      if [ "''${#data[@]}" -ne "$expected_data" ]; then
        if [ "$expected_data" -eq 0 ]; then
          die "the configuration '$configuration' has no data disks (single-disk layout): drop --data"
        fi
        die "the configuration '$configuration' has $expected_data data disk(s) (xnode.disks.data); give --data DEVICE once for each, in order (got ''${#data[@]})"
      fi

      # Refuse anything that is not a disk, repeats, or is the live medium itself.
      live_disk=""
      if live_source=$(findmnt -n -o SOURCE /iso 2>/dev/null); then
        parent=$(lsblk -n -o PKNAME "$live_source" 2>/dev/null | head -n 1 || true)
        if [ -n "$parent" ]; then
          live_disk=/dev/$parent
        else
          live_disk=$live_source
        fi
        live_disk=$(readlink -f "$live_disk")
      fi
      seen=()
      for dev in "$disk" "''${data[@]}"; do
        [ -b "$dev" ] || die "$dev is not a block device ('lsblk -d' lists the disks)"
        real=$(readlink -f "$dev")
        [ "$(lsblk -n -d -o TYPE "$real")" = disk ] || die "$dev is a $(lsblk -n -d -o TYPE "$real"), not a whole disk"
        [ "$real" != "$live_disk" ] || die "$dev is the medium this live system runs from; pick another disk"
        for s in "''${seen[@]}"; do
          [ "$s" != "$real" ] || die "$dev is given twice"
        done
        seen+=("$real")
      done

      # The first-boot configuration: checked now, before anything is erased.
      if [ -n "$config" ]; then
        [ -n "$firstboot" ] || die "this installer was built without the first-boot module (modules/firstboot.nix), so --config is not supported"
        [ -f "$config" ] || die "$config: no such file"
        "$firstboot" --check "$config" || die "$config is not a valid first-boot file (problems above); nothing was changed"
      elif [ -f "$live_firstboot" ]; then
        config=$live_firstboot
        echo "Using the first-boot configuration this live system found at boot ($live_firstboot)."
      else
        echo "No first-boot configuration (--config FILE, or xnode.json on a stick labelled XNODE):"
        echo "the node will look for one when it first boots."
      fi

      echo
      echo "Installing '$configuration' will ERASE:"
      lsblk -o NAME,SIZE,TYPE,MODEL,SERIAL,MOUNTPOINTS "$disk" "''${data[@]}"
      if [ -z "$yes" ]; then
        [ -n "$interactive" ] || die "no terminal to confirm on: add --yes"
        read -r -p "Type 'yes' to erase these disks and install: " answer
        [ "$answer" = yes ] || die "not confirmed; nothing was changed"
      fi

      args=(--flake "$flake#$configuration" --disk main "$disk")
      for i in "''${!data[@]}"; do
        args+=(--disk "data$i" "''${data[$i]}")
      done
      if [ -n "$efi_entries" ]; then
        args+=(--write-efi-boot-entries)
      fi
      disko-install "''${args[@]}"

      if [ -n "$config" ]; then
        mnt=$(mktemp -d)
        trap 'umount -R "$mnt" 2>/dev/null || true; rmdir "$mnt" 2>/dev/null || true' EXIT
        udevadm settle || true
        mount "$root_device" "$mnt"
        if [ -n "$state_device" ]; then
          if [ ! -e "$state_device" ]; then
            mdadm --assemble --scan || true
            udevadm settle || true
          fi
          mkdir -p "$mnt$state_dir"
          mount "$state_device" "$mnt$state_dir"
        fi
        "$firstboot" --from "$config" --state-dir "$mnt$state_dir"
        umount -R "$mnt"
      fi

      echo
      echo "Xnode is installed on $disk. Remove the installation medium and reboot."
    '';
  };

  # Node services that must not run on the live medium.
  nodeServices = [
    "agent"
    "cometbft"
    "ipfs"
    "mesh"
  ];
in
{
  config = lib.mkMerge (
    [
      {
        assertions = [
          {
            assertion = cfg.flake != null;
            message = ''
              The Xnode installer ISO needs the flake it installs from: set
              xnode.installer.flake = self; (the flake's own `self`) in the
              configuration the ISO is built from, e.g. in flake.nix's module list.
            '';
          }
          {
            assertion = cfg.target != null;
            message = ''
              images/installer.nix is meant to be used through images/default.nix
              (system.build.images.iso-installer), which tells it what to install;
              import images/default.nix instead of installer.nix.
            '';
          }
        ];

        environment.systemPackages = [
          xnode-install
          cfg.disko
          # `sudo nixos-facter -o facter.json`: the host's hardware report.
          pkgs.nixos-facter
        ];
        # nixos-install (which disko-install runs) even if the node has it off.
        system.disableInstallerTools = lib.mkImageMediaOverride false;

        # Everything disko-install needs offline (see the header).
        system.extraDependencies = target.closure;

        # "nixos-xnode-<release>-x86_64" as the volume label, and in the file name.
        isoImage.edition = lib.mkDefault "xnode";
        isoImage.appendToMenuLabel = lib.mkDefault " Xnode live installer";
        isoImage.contents = lib.optional (cfg.firstbootFile != null) {
          source = cfg.firstbootFile;
          target = "/xnode.json";
        };

        services.getty.helpLine = lib.mkAfter ''

          To install Xnode on this machine (erases the disk you choose):
            sudo xnode-install --disk /dev/nvme0n1     (xnode-install --help)
        '';
      }
      (lib.optionalAttrs (options ? services.xnode.firstboot.enable) {
        # Read xnode.json from a stick or the ISO, for xnode-install to copy.
        services.xnode.firstboot.enable = lib.mkImageMediaOverride true;
      })
      (lib.optionalAttrs (options ? disko.enableConfig) {
        # The live system's filesystems are the ISO's, not the target's.
        disko.enableConfig = lib.mkImageMediaOverride false;
      })
    ]
    ++ map (
      name:
      lib.optionalAttrs (options ? services.xnode.${name}.enable) {
        services.xnode.${name}.enable = lib.mkImageMediaOverride false;
      }
    ) nodeServices
  );
}
