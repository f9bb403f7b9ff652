# `services.xnode.services.<name>`: the services the agent supervises.
# Each declaration becomes its systemd unit and its manifest entry through
# the one renderer (lib/render.nix); the part modules (cometbft, ipfs,
# mesh) declare theirs here, and an operator can add generic ones.
{
  config,
  lib,
  ...
}:
let
  inherit (lib) mkOption types;
  render = import ./lib/render.nix;
  cfg = config.services.xnode;

  restartField = mkOption {
    type = types.nullOr types.number;
    default = null;
    description = "See docs/manifest.md (`restart`); null keeps the agent's default.";
  };

  checkType = types.submodule {
    options = {
      type = mkOption {
        type = types.enum [
          "http"
          "tcp"
          "exec"
          "kind"
        ];
        description = "`http` (a GET answered with `expectStatus`), `tcp` (a connect), `exec` (exit 0), or `kind` (the kind's own check).";
      };
      url = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "For `http`: the URL, http:// or https://.";
      };
      expectStatus = mkOption {
        type = types.nullOr types.ints.u16;
        default = null;
        description = "For `http`: the expected status (the agent's default: 200).";
      };
      address = mkOption {
        type = types.nullOr types.str;
        default = null;
        description = "For `tcp`: IP:PORT.";
      };
      command = mkOption {
        type = types.nullOr (types.listOf types.str);
        default = null;
        description = "For `exec`: an absolute program and its arguments.";
      };
    };
  };

  serviceType = types.submodule (
    { name, ... }:
    {
      options = {
        name = mkOption {
          type = types.strMatching "[a-z0-9][a-z0-9-]*";
          default = name;
          readOnly = true;
          description = "The service's name in the manifest (the attribute name).";
        };
        kind = mkOption {
          type = types.enum [
            "cometbft"
            "kubo"
            "mesh"
            "generic"
          ];
          default = "generic";
          description = "Selects the agent's own health check and settings for the service.";
        };
        unit = mkOption {
          type = types.strMatching ".+\\.service";
          default = "${name}.service";
          description = "The systemd unit the agent starts and watches.";
        };
        description = mkOption {
          type = types.str;
          default = "Xnode service ${name}";
          description = "The unit's description.";
        };
        dependsOn = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Services started (and healthy) before this one.";
        };
        health = mkOption {
          type = types.nullOr (
            types.submodule {
              options = {
                check = mkOption {
                  type = checkType;
                  description = "What the agent checks.";
                };
                intervalSecs = mkOption {
                  type = types.nullOr types.number;
                  default = null;
                  description = "Seconds between checks (the agent's default: 5).";
                };
                timeoutSecs = mkOption {
                  type = types.nullOr types.number;
                  default = null;
                  description = "A slower check has failed (the agent's default: 2).";
                };
              };
            }
          );
          default = null;
          description = "The health check; null uses the kind's own (a `generic` service then has none).";
        };
        restart = mkOption {
          type = types.nullOr (
            types.submodule {
              options = lib.genAttrs [
                "unhealthyAfter"
                "backoffInitialSecs"
                "backoffMaxSecs"
                "giveUpAfter"
              ] (_: restartField);
            }
          );
          default = null;
          description = "The agent's restart policy; null keeps its defaults.";
        };
        settings = mkOption {
          type = types.attrsOf types.anything;
          default = { };
          description = "The kind's settings, as the agent reads them (docs/cometbft.md, docs/kubo.md).";
        };
        manageUnit = mkOption {
          type = types.bool;
          default = true;
          description = "Render the systemd unit here; false when the unit is defined elsewhere and only supervised.";
        };
        hardening = mkOption {
          type = types.bool;
          default = true;
          description = "Start the unit from the Xnode hardened baseline (lib/render.nix).";
        };
        gpu = mkOption {
          type = types.bool;
          default = false;
          description = "Grant the unit the NVIDIA devices (needs the NVIDIA hardware profile).";
        };
        serviceConfig = mkOption {
          type = types.attrsOf types.anything;
          default = { };
          description = "[Service] settings, over the baseline.";
        };
        unitConfig = mkOption {
          type = types.attrsOf types.anything;
          default = { };
          description = "[Unit] settings.";
        };
        environment = mkOption {
          type = types.attrsOf types.str;
          default = { };
          description = "The unit's environment.";
        };
        path = mkOption {
          type = types.listOf types.package;
          default = [ ];
          description = "Packages on the unit's PATH.";
        };
        after = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "More units to order after (dependencies' units are added).";
        };
        wants = mkOption {
          type = types.listOf types.str;
          default = [ ];
          description = "Units pulled in with this one.";
        };
      };
    }
  );

  declared = lib.attrValues cfg.services;
  managed = builtins.filter (s: s.manageUnit) declared;

  # NVIDIA device nodes a GPU service may open (NVML, CUDA, UVM).
  gpuDevices = [
    "/dev/nvidiactl rw"
    "/dev/nvidia-uvm rw"
    "/dev/nvidia-uvm-tools rw"
    "char-nvidia-frontend rw"
    "char-nvidia-uvm rw"
  ];
  withGpu =
    s:
    if !s.gpu then
      s
    else
      s
      // {
        serviceConfig = {
          # PrivateDevices would hide /dev/nvidia*; DevicePolicy=closed
          # plus DeviceAllow keeps every other device out.
          PrivateDevices = false;
          DeviceAllow = gpuDevices;
          # The CUDA driver maps JIT code.
          MemoryDenyWriteExecute = false;
        }
        // s.serviceConfig;
        environment = {
          LD_LIBRARY_PATH = "/run/opengl-driver/lib";
        }
        // s.environment;
      };
in
{
  options.services.xnode = {
    services = mkOption {
      type = types.attrsOf serviceType;
      default = { };
      description = "Services the Xnode agent supervises; each becomes a systemd unit and a manifest entry.";
    };
    hardware.nvidia.enable = lib.mkEnableOption "NVIDIA GPUs on this host (set by the NVIDIA hardware profile)";
  };

  config = lib.mkIf (cfg.services != { }) {
    systemd.services = render.systemdUnits (map withGpu managed);

    assertions =
      let
        units = map (s: s.unit) declared;
        dupUnits = lib.unique (builtins.filter (u: lib.count (x: x == u) units > 1) units);
      in
      map (s: {
        assertion = !s.gpu || cfg.hardware.nvidia.enable;
        message = "services.xnode.services.${s.name}.gpu is set, but this host has no NVIDIA profile: import nixosModules.hardware-nvidia, or set gpu = false.";
      }) declared
      ++ map (u: {
        assertion = false;
        message = "the unit ${u} is declared by more than one of services.xnode.services (${
          lib.concatMapStringsSep ", " (s: s.name) (builtins.filter (s: s.unit == u) declared)
        }): give each service its own unit.";
      }) dupUnits
      ++ lib.concatMap (
        s:
        map (d: {
          assertion = cfg.services ? ${d};
          message = "services.xnode.services.${s.name}.dependsOn names '${d}', which is not declared: enable it or remove it from dependsOn.";
        }) s.dependsOn
      ) declared;
  };
}
