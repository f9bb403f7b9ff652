# The flake's outputs, evaluated with nixpkgs' lib alone (`--arg
# nixpkgsLib PATH`): nixpkgs and disko are stand-ins, so this checks the
# wiring (which outputs exist, which checks are found, that the modules
# default to the flake's own packages), not what nixpkgs builds.
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  stubs = import ./stubs.nix { inherit lib; };
  fakeDrv = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/11111111111111111111111111111111-${name}";
  };

  fakePkgs =
    system:
    stubs.pkgs
    // {
      stdenv.hostPlatform.system = system;
      # The flake's own packages, named after their file.
      callPackage = file: _: fakeDrv ("flake-" + lib.removeSuffix ".nix" (baseNameOf file));
      writeShellApplication = { name, ... }: fakeDrv name // { meta.mainProgram = name; };
      runCommand = name: _: _: fakeDrv name;
      writeText = name: _: fakeDrv name;
      mkShell = _: fakeDrv "shell";
      nixfmt = fakeDrv "nixfmt";
      nixos-anywhere = fakeDrv "nixos-anywhere";
    };

  nixpkgs = {
    lib = lib // {
      nixosSystem = args: {
        inherit args;
        config.system.build = {
          vm = fakeDrv "vm";
          images = { };
        };
      };
    };
    legacyPackages = lib.genAttrs [
      "x86_64-linux"
      "aarch64-linux"
    ] fakePkgs;
  };
  disko.nixosModules.disko = { };

  flake = (import ../../flake.nix).outputs {
    self = flake // {
      outPath = toString ../..;
    };
    inherit nixpkgs disko;
  };

  # A module from the flake, evaluated against the stubs like the others.
  evalFlakeModule =
    module: extra:
    (lib.evalModules {
      modules = [
        stubs.module
        module
        extra
      ];
      specialArgs = {
        pkgs = fakePkgs "x86_64-linux";
        modulesPath = "/nixpkgs/nixos/modules";
      };
    }).config;

  withAll = evalFlakeModule flake.nixosModules.default {
    services.xnode.agent.enable = true;
    services.xnode.cometbft = {
      enable = true;
      chainId = "xnode-testnet-1";
      genesis = "/etc/xnode/cometbft/genesis.json";
    };
  };
  agentAlone = evalFlakeModule flake.nixosModules.agent { services.xnode.agent.enable = true; };
  # Several of the flake's modules at once: each default is set once.
  combined = evalFlakeModule {
    imports = [
      flake.nixosModules.agent
      flake.nixosModules.cometbft
      flake.nixosModules.ipfs
      flake.nixosModules.default
    ];
  } { services.xnode.agent.enable = true; };
in
{
  outputs = builtins.attrNames flake;
  packages = lib.mapAttrs (_: builtins.attrNames) flake.packages;
  nixosModules = builtins.attrNames flake.nixosModules;
  nixosConfigurations = builtins.attrNames flake.nixosConfigurations;
  apps = lib.mapAttrs (_: builtins.attrNames) flake.apps;
  checks = lib.mapAttrs (_: builtins.attrNames) flake.checks;
  formatter = flake.formatter.x86_64-linux.name;
  defaultModule = {
    agentExecStart = withAll.systemd.services.xnode-agent.serviceConfig.ExecStart;
    cometbftExecStart = withAll.systemd.services.cometbft.serviceConfig.ExecStart;
  };
  combinedModules.agentExecStart = combined.systemd.services.xnode-agent.serviceConfig.ExecStart;
  agentModuleAlone = {
    agentExecStart = agentAlone.systemd.services.xnode-agent.serviceConfig.ExecStart;
    cometbftDeclared = agentAlone.services.xnode ? cometbft;
  };
}
