# The appliance's images, through nixpkgs' image framework (`image.modules`
# and `system.build.images`, nixpkgs 25.05+): each variant is this
# configuration extended with the variant's module.
#
#   system.build.images.iso-installer  live USB/ISO that installs this configuration
#                                      (installer.nix; flake package xnode-iso)
#   system.build.images.raw-efi        raw UEFI disk image (xnode-raw-efi)
#   system.build.images.qemu-efi       qcow2 UEFI disk image (xnode-qcow2)
#
# The disk images are nixpkgs' make-disk-image layout (ESP labelled ESP,
# ext4 root labelled nixos, grown to the disk on first boot), not the
# disko layout of an installed node: the variants turn disko's
# filesystems off. A machine started from such an image runs the image's
# own variant of this configuration; to change it, build a new image,
# or install the node (xnode-install, nixos-anywhere) to get the disko
# layout that `nixos-rebuild --flake .#<configuration>` expects.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.xnode.installer;

  # A flake's source and, recursively, its inputs' (for offline evaluation
  # of the flake on the live system). A plain path has no known inputs.
  flakeSources =
    flake:
    [ "${flake}" ] ++ lib.concatMap flakeSources (lib.attrValues (flake.inputs or { }));

  stateDir = config.services.xnode.agent.stateDir or "/var/lib/xnode";

  # What the live installer needs to know about, and carry of, this
  # configuration. Evaluated here, in the configuration being installed;
  # the ISO variant is an extension of it and cannot see it otherwise.
  target = {
    closure = [
      config.system.build.toplevel
      # What building the disko script for the chosen disks and installing
      # takes (disko's offline-installer list, docs/disko-install.md).
      pkgs.stdenv.drvPath
      pkgs.perlPackages.ConfigIniFiles
      pkgs.perlPackages.FileSlurp
      (pkgs.closureInfo { rootPaths = [ ]; }).drvPath
    ]
    ++ lib.optionals (config.system.build ? diskoScript) [
      config.system.build.diskoScript
      config.system.build.diskoScript.drvPath
    ]
    ++ lib.optionals (cfg.flake != null) (lib.unique (flakeSources cfg.flake));
    diskNames = lib.attrNames (config.disko.devices.disk or { });
    rootDevice = toString (config.fileSystems."/".device or "");
    inherit stateDir;
    stateDevice =
      if config.fileSystems ? ${stateDir} then
        toString (config.fileSystems.${stateDir}.device or "")
      else
        "";
  };

  # The disk images boot from their own ESP and root (see the header).
  diskImage =
    { lib, options, ... }:
    {
      config = lib.mkMerge [
        {
          boot.loader.grub.enable = lib.mkImageMediaOverride false;
          boot.loader.systemd-boot.enable = lib.mkImageMediaOverride true;
          # The image is built in a VM and booted on other machines.
          boot.loader.efi.canTouchEfiVariables = lib.mkImageMediaOverride false;
        }
        (lib.optionalAttrs (options ? disko.enableConfig) {
          disko.enableConfig = lib.mkImageMediaOverride false;
        })
      ];
    };
in
{
  options.xnode.installer = {
    flake = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = lib.literalExpression "self";
      description = ''
        The flake the live installer installs from: set it to the flake's
        `self`. Its source and all its inputs go into the ISO's store, so
        `disko-install --flake <it>#<configuration>` runs offline. Needed
        for the iso-installer image only.
      '';
    };
    configuration = lib.mkOption {
      type = lib.types.str;
      default = "xnode";
      example = "xnode-gpu";
      description = ''
        The name, under the flake's nixosConfigurations, of this very
        configuration (the one the ISO is built from): the installer carries
        its closure, so it must be the same system.
      '';
    };
    firstbootFile = lib.mkOption {
      type = lib.types.nullOr lib.types.path;
      default = null;
      example = lib.literalExpression "./xnode.json";
      description = ''
        A first-boot file (xnode.json, `xnode.firstboot/v1`) to put on the ISO
        (as /iso/xnode.json on the live system), which `xnode-install` then
        installs with the node. It holds public keys and addresses only.
      '';
    };
    disko = lib.mkOption {
      type = lib.types.package;
      default = pkgs.disko;
      defaultText = lib.literalExpression "pkgs.disko";
      description = "The disko package whose disko-install the live installer runs (e.g. the flake input's).";
    };
    target = lib.mkOption {
      type = lib.types.nullOr lib.types.raw;
      default = null;
      internal = true;
      description = "Facts about the configuration being installed, set by images/default.nix for the ISO.";
    };
  };

  config.image.modules = {
    iso-installer = {
      imports = [ ./installer.nix ];
      xnode.installer.target = target;
    };
    raw-efi = diskImage;
    qemu-efi = diskImage;
  };
}
