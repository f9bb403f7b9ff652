# Stand-ins for the NixOS options and packages the Xnode modules use, so
# that `lib.evalModules` can evaluate modules/ with nixpkgs' lib alone (CI
# has no nixpkgs). Options the modules only set are freeform; options the
# modules read are declared with NixOS' own types and defaults.
{ lib }:
let
  inherit (lib) mkOption types;
  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  writeText = name: text: fakeDrv name // { inherit text; };
in
{
  pkgs = {
    xnode-agent = fakeDrv "xnode-agent-0.1.0";
    cometbft = fakeDrv "cometbft-0.38.21";
    kubo = fakeDrv "kubo";
    coreutils = fakeDrv "coreutils";
    diffutils = fakeDrv "diffutils";
    jq = fakeDrv "jq";
    curl = fakeDrv "curl";
    util-linux = fakeDrv "util-linux";
    cudaPackages.cuda_nvrtc = fakeDrv "cuda_nvrtc-12.6";
    inherit writeText;
    writeShellScript = writeText;
    writeShellApplication = { name, text, ... }: writeText name text;
  };

  module = {
    freeformType = types.lazyAttrsOf types.anything;
    options = {
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      networking.hostName = mkOption {
        type = types.str;
        default = "xnode";
      };
      networking.firewall = mkOption {
        type = types.submodule {
          freeformType = types.lazyAttrsOf types.anything;
          options.allowedTCPPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
          options.allowedUDPPorts = mkOption {
            type = types.listOf types.port;
            default = [ ];
          };
        };
        default = { };
      };
      systemd.services = mkOption {
        type = types.lazyAttrsOf (types.lazyAttrsOf types.anything);
        default = { };
      };
      # Read by the NVIDIA profile: is pkgs given from outside?
      nixpkgs.pkgs = mkOption { type = types.unspecified; };
      nixpkgs.config = mkOption {
        type = types.lazyAttrsOf types.anything;
        default = { };
      };
      services.xserver = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      hardware = mkOption {
        type = types.submodule {
          freeformType = types.lazyAttrsOf types.anything;
          options.facter.report = mkOption {
            type = types.attrsOf types.anything;
            default = { };
          };
          options.facter.reportPath = mkOption {
            type = types.nullOr types.path;
            default = null;
          };
        };
        default = { };
      };
    };
  };
}
