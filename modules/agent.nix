# `services.xnode.agent`: the node agent. It renders the manifest of every
# declared service to /etc/xnode/manifest.json, runs `xnode-agent run`
# (Type=notify, watchdog) to supervise them, makes the node key on first
# boot, and attests on a timer.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  render = import ./lib/render.nix;
  cfg = config.services.xnode.agent;
  xnode = config.services.xnode;
  agentBin = "${cfg.package}/bin/xnode-agent";

  manifest = render.manifest (lib.attrValues xnode.services);
  manifestFile = pkgs.writeText "xnode-manifest.json" (builtins.toJSON manifest);

  # Continuous proof of resource (`xnode.challenges/v1`, docs/proof-of-resource.md).
  por = cfg.proofOfResource;
  challenges = {
    schema = "xnode.challenges/v1";
    every_seconds = por.intervalSeconds;
    min_request_gap_seconds = por.minRequestGapSeconds;
    inherit (por) nice claim;
  };
  challengesFile = pkgs.writeText "xnode-challenges.json" (builtins.toJSON challenges);
  plotDir = if (por.claim.plot or null) == null then null else dirOf por.claim.plot;

  # `run` flags: the typed options, then `settings` over them.
  runFlags = {
    manifest = cfg.manifestPath;
    socket = cfg.api.socket;
    socket-group = cfg.api.group;
    state-dir = cfg.stateDir;
    tcti = cfg.tcti;
  }
  // lib.optionalAttrs (cfg.api.tcp != null) {
    api-tcp = cfg.api.tcp;
    api-authorized-keys = cfg.api.authorizedKeysFile;
  }
  // lib.optionalAttrs por.enable {
    challenges = challengesFile;
  }
  // cfg.settings;

  # `--name value` per flag; `true` is a bare `--name`, `false` leaves it out.
  flagArgs =
    name: value:
    if value == true then
      [ "--${name}" ]
    else if value == false then
      [ ]
    else
      [
        "--${name}"
        (toString value)
      ];
  toFlags = lib.concatLists (lib.mapAttrsToList flagArgs runFlags);

  # A periodic report is bound to a public beacon: the latest CometBFT
  # block hash when this node runs CometBFT, else the clock beacon
  # SHA-256("xnode-clock-beacon/v1 " + the UTC minute), which any verifier
  # recomputes from the report's time (docs/flake.md).
  cometbftRpc =
    let
      m = builtins.match "tcp://(.*):([0-9]+)" (xnode.cometbft.rpcAddress or "");
      host = builtins.head m;
      wildcard = host == "0.0.0.0" || host == "";
    in
    if (xnode.cometbft.enable or false) && m != null then
      "http://${if wildcard then "127.0.0.1" else host}:${builtins.elemAt m 1}"
    else
      null;
  attestScript = pkgs.writeShellScript "xnode-attest" ''
    set -eu
    beacon=""
    ${lib.optionalString (cometbftRpc != null) ''
      beacon=$(${pkgs.curl}/bin/curl -fsS --max-time 5 ${cometbftRpc}/status \
        | ${pkgs.jq}/bin/jq -r '.result.sync_info.latest_block_hash // empty' || true)
    ''}
    if [ -z "$beacon" ]; then
      beacon=$(printf 'xnode-clock-beacon/v1 %s' "$(date -u +%Y-%m-%dT%H:%MZ)" \
        | ${pkgs.coreutils}/bin/sha256sum | cut -d' ' -f1)
    fi
    exec ${agentBin} attest --state-dir ${cfg.stateDir} --tcti ${cfg.tcti} \
      --beacon "$beacon" --out ${cfg.stateDir}/attestation.json
  '';

  # NVML (libnvidia-ml.so) comes from the driver, not the store.
  # The GPU challenge runs CUDA: the driver's libcuda (beside NVML), NVRTC
  # to compile its kernels, and the unified-memory device.
  gpuProof = por.enable && builtins.elem "gpu" (por.claim.resources or [ ]);
  nvmlEnvironment = lib.optionalAttrs xnode.hardware.nvidia.enable {
    LD_LIBRARY_PATH = lib.concatStringsSep ":" (
      [ "/run/opengl-driver/lib" ]
      ++ lib.optional gpuProof "${lib.getLib pkgs.cudaPackages.cuda_nvrtc}/lib"
    );
  };

  # The agent reads DMI serials (root-only files), the TPM and systemd's
  # manager interface: it runs as root, but with no capabilities at all,
  # a read-only system and only its own state writable.
  agentHardening = render.hardening // {
    PrivateDevices = false;
    DeviceAllow = [
      "/dev/tpmrm0 rw"
    ]
    ++ lib.optionals xnode.hardware.nvidia.enable [
      "/dev/nvidiactl rw"
      "char-nvidia-frontend rw"
    ]
    ++ lib.optional gpuProof "char-nvidia-uvm rw";
    # NVML reads PCI config space of the GPUs through sysfs.
    ProtectKernelTunables = !xnode.hardware.nvidia.enable;
    ProtectProc = "default";
    ProcSubset = "all";
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
      "AF_NETLINK"
    ];
    StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
    StateDirectoryMode = "0711";
  };
in
{
  imports = [
    ./services.nix
    ./port-conflicts.nix
  ];

  options.services.xnode.agent = {
    enable = lib.mkEnableOption "the Xnode agent (probe, attest, supervise)";
    package = mkOption {
      type = types.package;
      default = pkgs.xnode-agent;
      defaultText = lib.literalExpression "pkgs.xnode-agent";
      description = "The agent package.";
    };
    stateDir = mkOption {
      type = types.strMatching "/var/lib/[^/].*";
      default = "/var/lib/xnode";
      description = "The node's state: node.key (made on first boot, 0600), TPM key blobs, attestation.json, authorized_keys.";
    };
    tcti = mkOption {
      type = types.str;
      default = "device:/dev/tpmrm0";
      description = "The TPM the agent uses (`device:/dev/tpmrm0`, `swtpm:host=H,port=P`, `none`).";
    };
    api = {
      socket = mkOption {
        type = types.str;
        default = "/run/xnode/agent.sock";
        description = "The local API's Unix socket (`xnode-agent status` reads it).";
      };
      group = mkOption {
        type = types.str;
        default = "xnode-api";
        description = "The group that may use the local API socket (it only reads: status, inventory, attestation, metrics); the mesh joins it to gossip the services' metrics.";
      };
      tcp = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "0.0.0.0:7300";
        description = "Also serve the API on TCP at IP:PORT; every request must be signed by a key in `authorizedKeysFile`.";
      };
      authorizedKeysFile = mkOption {
        type = types.str;
        default = "${cfg.stateDir}/authorized_keys";
        defaultText = lib.literalExpression ''"''${stateDir}/authorized_keys"'';
        description = "Hex Ed25519 public keys allowed to use the TCP API, one per line (the first-boot file writes it).";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the TCP API's port.";
      };
    };
    attest = {
      interval = mkOption {
        type = types.nullOr types.str;
        default = "1h";
        description = "Write a fresh attestation to stateDir/attestation.json this often (a systemd time span); null turns the timer off.";
      };
    };
    proofOfResource = {
      enable = lib.mkEnableOption "continuous proof of resource: the agent proves `claim` on a schedule and when a verifier asks (POST /v1/challenge)";
      intervalSeconds = mkOption {
        type = types.nullOr (types.ints.between 60 31536000);
        default = 21600;
        description = "Seconds between scheduled proofs (spread by a tenth either way; the first falls at random in the first period); null: only on request.";
      };
      minRequestGapSeconds = mkOption {
        type = types.ints.unsigned;
        default = 600;
        description = "Least seconds from the end of one proof to a requested one, so requests cannot keep the node busy.";
      };
      nice = mkOption {
        type = types.ints.between 0 19;
        default = 10;
        description = "Niceness of scheduled proofs, so the node's own work comes first (requested ones run at 0).";
      };
      claim = mkOption {
        type = types.attrsOf types.anything;
        default = {
          resources = [ "cpu" ];
        };
        example = {
          resources = [
            "cpu"
            "mem"
            "disk"
          ];
          cores = 16;
          memory = "64G";
          disk = "1T";
          plot = "/var/lib/xnode/plot";
        };
        description = "What the node claims: `resources` (cpu, mem, disk), `cores`, `memory`, `disk`, `plot` and the protocols' parameters, as `xnode-agent challenge run` takes them (docs/proof-of-resource.md).";
      };
      rendered = mkOption {
        type = types.attrsOf types.anything;
        default = challenges;
        readOnly = true;
        description = "The rendered `xnode.challenges/v1` document.";
      };
    };
    manifestPath = mkOption {
      type = types.str;
      default = "/etc/xnode/manifest.json";
      readOnly = true;
      description = "Where the rendered manifest is installed.";
    };
    manifest = mkOption {
      type = types.attrsOf types.anything;
      default = manifest;
      readOnly = true;
      description = "The rendered manifest (`xnode.manifest/v1`) of every declared service.";
    };
    manifestFile = mkOption {
      type = types.package;
      default = manifestFile;
      readOnly = true;
      description = "The rendered manifest as a store file (checks run `xnode-agent manifest check` on it).";
    };
    settings = mkOption {
      type = types.attrsOf (
        types.oneOf [
          types.str
          types.bool
          types.int
        ]
      );
      default = { };
      example = {
        bus = "unix:path=/run/dbus/system_bus_socket";
      };
      description = "More `xnode-agent run` flags (without the leading --), over the typed options.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = !gpuProof || xnode.hardware.nvidia.enable;
        message = "services.xnode.agent.proofOfResource.claim.resources has \"gpu\": the GPU challenge needs the NVIDIA driver and CUDA; import the NVIDIA profile (hardware/nvidia.nix) or drop \"gpu\".";
      }
      {
        assertion = cfg.api.tcp == null || (import ./lib/ports.nix).parse cfg.api.tcp != null;
        message = "services.xnode.agent.api.tcp = \"${toString cfg.api.tcp}\" is not IP:PORT: write it like \"0.0.0.0:7300\".";
      }
    ];

    environment.etc."xnode/manifest.json".source = manifestFile;
    environment.systemPackages = [ cfg.package ];

    # Who may use the local API socket besides root.
    users.groups.${cfg.api.group} = { };

    # tss owns /dev/tpmrm0 (nixpkgs' udev rules).
    security.tpm2.enable = lib.mkDefault true;

    networking.firewall.allowedTCPPorts = lib.optional (
      cfg.api.openFirewall && cfg.api.tcp != null
    ) ((import ./lib/ports.nix).parse cfg.api.tcp).port;

    systemd.services.xnode-identity = {
      description = "Xnode node key (made once, on first boot)";
      wantedBy = [ "multi-user.target" ];
      before = [ "xnode-agent.service" ];
      unitConfig.ConditionPathExists = "!${cfg.stateDir}/node.key";
      serviceConfig = render.hardening // {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${agentBin} identity --state-dir ${cfg.stateDir}";
        StateDirectory = lib.removePrefix "/var/lib/" cfg.stateDir;
        # Traversable (not listable): the services' homes live under it;
        # the files in it carry their own modes (node.key 0600).
        StateDirectoryMode = "0711";
      };
    };

    systemd.services.xnode-agent = {
      description = "Xnode agent: supervise the node's services, serve the local API";
      wantedBy = [ "multi-user.target" ];
      wants = [ "xnode-identity.service" ];
      after = [
        "xnode-identity.service"
        "dbus.service"
        "network.target"
      ];
      # A new manifest is a reload (SIGHUP), never a restart: services keep
      # running while the agent reads it.
      reloadTriggers = [ manifestFile ];
      serviceConfig = agentHardening // {
        Type = "notify";
        NotifyAccess = "main";
        # The API socket's directory; only the daemon has it (a oneshot's
        # RuntimeDirectory is removed when it exits, socket and all).
        RuntimeDirectory = "xnode";
        RuntimeDirectoryMode = "0755";
        # Without CAP_CHOWN the agent may give its socket only a group it
        # is in.
        SupplementaryGroups = [ cfg.api.group ];
        WatchdogSec = "30s";
        ExecStart = "${agentBin} run ${lib.escapeShellArgs toFlags}";
        ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
        Restart = "always";
        RestartSec = "2s";
      }
      # A plot kept outside the state directory must be writable there.
      // lib.optionalAttrs (
        por.enable && plotDir != null && !(lib.hasPrefix "${cfg.stateDir}/" por.claim.plot)
      ) { ReadWritePaths = [ plotDir ]; };
      environment = nvmlEnvironment;
    };

    systemd.services.xnode-attest = lib.mkIf (cfg.attest.interval != null) {
      description = "Xnode attestation (probe, sign, TPM quote)";
      after = [ "xnode-identity.service" ];
      wants = [ "xnode-identity.service" ];
      serviceConfig = agentHardening // {
        Type = "oneshot";
        ExecStart = attestScript;
        # The report quotes the boot event log, which only root may read.
        ReadOnlyPaths = [ "/sys/kernel/security" ];
      };
      environment = nvmlEnvironment;
    };

    systemd.timers.xnode-attest = lib.mkIf (cfg.attest.interval != null) {
      description = "Xnode attestation, every ${cfg.attest.interval}";
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnBootSec = "2min";
        OnUnitActiveSec = cfg.attest.interval;
        RandomizedDelaySec = "5min";
      };
    };
  };
}
