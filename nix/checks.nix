# The flake's checks other than the VM tests (flake.nix adds every
# tests/<scenario>.nix): the agent built with its tests, clippy, rustfmt,
# nixfmt, every configuration's manifest through the agent's parser, and
# an evaluation of every hardware profile.
{
  pkgs,
  lib,
  self,
  disko,
  hardware,
  packages,
}:
let
  agent = packages.xnode-agent;
  # The flake's own source: tracked files only.
  src = self;

  # A profile evaluated on its own, with only what every host must say.
  evalProfile =
    name: profile:
    let
      system = lib.nixosSystem {
        modules = [
          disko.nixosModules.disko
          self.nixosModules.default
          profile
          {
            nixpkgs.hostPlatform = pkgs.stdenv.hostPlatform.system;
            system.stateVersion = "26.05";
            fileSystems."/" = lib.mkDefault {
              device = "/dev/disk/by-label/nixos";
              fsType = "ext4";
            };
            # Profiles that pick no boot loader get grub on no device.
            boot.loader.grub.devices = lib.mkDefault [ "nodev" ];
          }
          (
            { options, ... }:
            {
              # The multi-disk layout needs its data disks named.
              config = lib.optionalAttrs (options ? xnode.disks.data) {
                xnode.disks.data = lib.mkDefault [
                  "/dev/vdb"
                  "/dev/vdc"
                ];
              };
            }
          )
        ];
      };
    in
    pkgs.writeText "hardware-${name}-evaluates" system.config.system.build.toplevel.drvPath;

  manifestCheck =
    name: configuration:
    pkgs.runCommand "manifest-${name}" { nativeBuildInputs = [ agent ]; } ''
      xnode-agent manifest check ${configuration.config.services.xnode.agent.manifestFile} | tee $out
    '';
in
{
  inherit agent;

  clippy = agent.overrideAttrs (old: {
    pname = "xnode-agent-clippy";
    nativeBuildInputs = old.nativeBuildInputs ++ [ pkgs.clippy ];
    buildPhase = ''
      runHook preBuild
      cargo clippy --workspace --all-targets --locked --offline -- -D warnings
      runHook postBuild
    '';
    doCheck = false;
    installPhase = "touch $out";
  });

  rustfmt =
    pkgs.runCommand "xnode-rustfmt"
      {
        nativeBuildInputs = [
          pkgs.cargo
          pkgs.rustfmt
        ];
      }
      ''
        cd ${src}
        cargo fmt --all -- --check
        touch $out
      '';

  nixfmt = pkgs.runCommand "xnode-nixfmt" { nativeBuildInputs = [ pkgs.nixfmt ]; } ''
    cd ${src}
    find . -name '*.nix' -not -path './target/*' -print0 | xargs -0 nixfmt --check
    touch $out
  '';
}
# The configurations and profiles are x86_64 machines.
// lib.optionalAttrs (pkgs.stdenv.hostPlatform.system == "x86_64-linux") (
  lib.mapAttrs' (
    name: configuration: lib.nameValuePair "manifest-${name}" (manifestCheck name configuration)
  ) self.nixosConfigurations
  // lib.mapAttrs' (
    name: profile: lib.nameValuePair "hardware-${name}" (evalProfile name profile)
  ) hardware
)
