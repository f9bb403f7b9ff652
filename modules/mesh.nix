# `services.xnode.mesh`: the node's libp2p mesh (service discovery,
# gossiped metrics, task delegation), run by `xnode-agent mesh run` under
# the node key and supervised by the agent.
#
# The options become the mesh entry's `settings` in the manifest, which
# `xnode-agent mesh run` reads as its MeshSettings
# (agent/xnode-agent/src/cmd_mesh.rs). MeshSettings refuses unknown keys,
# so only its keys are emitted, and only those with a value.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.xnode.mesh;
  agent = config.services.xnode.agent;
  ports = import ./lib/ports.nix;
  listen = ports.parse cfg.listen;

  # The mesh's runtime directory: its API socket (the CLI's default
  # --api) and, when announced, its copy of the node's attestation.
  runtimeDir = "/run/xnode-mesh";
  attestationCopy = "${runtimeDir}/attestation.json";

  # The mesh runs as a DynamicUser and the agent writes attestation.json
  # 0600 (by an atomic rename) in its state directory, so the mesh cannot
  # read it there. LoadCredential= would hand it over only as it was when
  # the mesh started: the mesh would announce a copy that goes stale after
  # attestation.maxAgeSecs, and a node that has not attested yet would
  # fail to start its mesh at all. Instead root copies the file into the
  # mesh's runtime directory when the mesh starts and after every
  # attestation; it is public (the mesh gossips it to every peer), so
  # 0444. With no attestation yet, or no mesh running, there is nothing to
  # copy and nothing fails: the mesh logs that it has none to announce.
  copyAttestation = pkgs.writeShellScript "xnode-mesh-attestation" ''
    set -eu
    src=${agent.stateDir}/attestation.json
    if [ ! -f "$src" ] || [ ! -d ${runtimeDir} ]; then
      exit 0
    fi
    ${pkgs.coreutils}/bin/install -m 0444 "$src" ${runtimeDir}/.attestation.json.new
    ${pkgs.coreutils}/bin/mv -f ${runtimeDir}/.attestation.json.new ${attestationCopy}
  '';

  # The typed options as MeshSettings keys; a null option is left out.
  typedSettings = lib.filterAttrs (_: v: v != null) {
    inherit (cfg) listen bootstrap mdns;
    ek_ca_bundle = cfg.attestation.ekCaBundle;
    activations = cfg.attestation.activations;
    attestation_max_age_secs = cfg.attestation.maxAgeSecs;
    metrics_interval_secs = cfg.metricsInterval;
    agent_socket = cfg.agentSocket;
    # The agent's health check reads the mesh's API socket through this group.
    api_group = agent.api.group;
    attestation = if cfg.announceAttestation then attestationCopy else null;
  };

  # The attestation timer hands each fresh attestation to the mesh.
  copyAfterAttesting = cfg.announceAttestation && agent.attest.interval != null;
in
{
  imports = [ ./agent.nix ];

  options.services.xnode.mesh = {
    enable = lib.mkEnableOption "the Xnode libp2p mesh";
    listen = mkOption {
      type = types.strMatching "/ip4/[0-9.]+/tcp/[0-9]+";
      default = "/ip4/0.0.0.0/tcp/4100";
      description = "The mesh's TCP listener (QUIC takes the same port on UDP).";
    };
    bootstrap = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Peers to join the mesh through (`…/p2p/<peer ID>`).";
    };
    mdns = mkOption {
      type = types.bool;
      default = false;
      description = "Discover peers on the LAN (off on servers: it announces the node to its whole segment).";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Open the mesh port (TCP and UDP).";
    };
    metricsInterval = mkOption {
      type = types.ints.positive;
      default = 30;
      description = "Seconds between gossips of this node's load and service metrics (and re-announcements of its attestation).";
    };
    agentSocket = mkOption {
      type = types.nullOr types.str;
      # The agent makes its socket 0660 with group `api.group`, which the
      # mesh's DynamicUser joins (SupplementaryGroups below).
      default = agent.api.socket;
      defaultText = lib.literalExpression "config.services.xnode.agent.api.socket";
      description = ''
        The agent's API socket, read for the metrics of the node's services
        that the mesh gossips; null gossips the node's load only.
      '';
    };
    announceAttestation = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Announce this node's latest attestation (`''${stateDir}/attestation.json`,
        written by the agent's attestation timer) on the mesh, so that peers
        holding the EK CAs count the node as attested and choose it for tasks.
        Off by default: the envelope describes the node's hardware, and every
        peer of the mesh receives it.
      '';
    };
    attestation = {
      ekCaBundle = mkOption {
        type = types.nullOr types.path;
        default = null;
        example = "/etc/xnode/ek-ca.pem";
        description = ''
          PEM bundle of the EK CAs whose TPMs count as attested. Null: no
          peer counts as attested, so none is chosen for delegated tasks.
          Read by the mesh's DynamicUser: a store path or a world-readable file.
        '';
      };
      activations = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          The verifier's activation registry (`xnode-agent credential accept`):
          only peers whose attestation key it lists count as attested. Read
          by the mesh's DynamicUser: a store path or a world-readable file.
        '';
      };
      maxAgeSecs = mkOption {
        type = types.ints.positive;
        default = 7200;
        description = "Peers' attestations older than this do not count (keep it above the attestation interval).";
      };
    };
    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = "Further mesh settings, over the typed options, passed to the agent's mesh as they are.";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = agent.enable;
        message = "services.xnode.mesh runs under the agent's node key: set services.xnode.agent.enable = true.";
      }
    ];

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = [ listen.port ];
      allowedUDPPorts = [ listen.port ];
    };

    services.xnode.services.mesh = {
      kind = "mesh";
      unit = "xnode-mesh.service";
      description = "Xnode mesh (libp2p)";
      settings = typedSettings // cfg.settings;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        # Ready once it listens and serves its API.
        Type = "notify";
        DynamicUser = true;
        # The PeerId is the node key's: the mesh reads it as a credential,
        # never from the agent's state directory.
        LoadCredential = "node-key:${agent.stateDir}/node.key";
        ExecStart = "${agent.package}/bin/xnode-agent mesh run --manifest ${agent.manifestPath} --key %d/node-key";
        StateDirectory = "xnode-mesh";
        # Read access to the agent's API socket (see agentSocket).
        SupplementaryGroups = [ agent.api.group ];
        # The API socket, /run/xnode-mesh/api.sock (the mesh makes it 0660:
        # root's `xnode-agent mesh …` commands reach it).
        RuntimeDirectory = "xnode-mesh";
        RuntimeDirectoryMode = "0755";
        # libp2p watches the interfaces over netlink to resolve wildcard
        # listen addresses.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
      }
      // lib.optionalAttrs cfg.announceAttestation {
        # `+`: as root, outside the sandbox, into the runtime directory
        # systemd has just made.
        ExecStartPre = "+${copyAttestation}";
      };
    };

    # A fresh attestation reaches the running mesh at once.
    systemd.services.xnode-attest = lib.mkIf copyAfterAttesting {
      serviceConfig.ExecStartPost = "+${copyAttestation}";
    };
  };
}
