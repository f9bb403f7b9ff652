# Evaluates modules/ with nixpkgs' lib (`--arg nixpkgsLib PATH`) against the
# stubs, for each scenario in scenarios.nix. Prints, per scenario, the
# failed assertions and, when there are none, the rendered manifest, the
# Xnode units and the firewall ports. Golden files: tests/fixtures/nix/.
{ nixpkgsLib }:
let
  lib = import nixpkgsLib;
  stubs = import ./stubs.nix { inherit lib; };
  scenarios = import ./scenarios.nix;

  eval =
    scenario:
    let
      result = lib.evalModules {
        modules = [
          stubs.module
          (scenario.base or ../../modules)
        ]
        ++ scenario.modules;
        specialArgs = {
          inherit (stubs) pkgs;
          modulesPath = "/nixpkgs/nixos/modules";
        };
      };
      c = result.config;
      failed = map (a: a.message) (builtins.filter (a: !a.assertion) c.assertions);
      ours = lib.filterAttrs (n: _: builtins.elem n scenario.units) c.systemd.services;
    in
    if failed != [ ] then
      { failedAssertions = failed; }
    else
      {
        failedAssertions = [ ];
        manifest = c.services.xnode.agent.manifest;
        units = ours;
        firewall = {
          tcp = lib.sort (a: b: a < b) c.networking.firewall.allowedTCPPorts;
          udp = lib.sort (a: b: a < b) c.networking.firewall.allowedUDPPorts;
        };
      }
      // lib.optionalAttrs c.services.xnode.agent.proofOfResource.enable {
        challenges = c.services.xnode.agent.proofOfResource.rendered;
      };
in
builtins.mapAttrs (_: eval) scenarios
