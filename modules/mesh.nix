# `services.xnode.mesh`: the node's libp2p mesh (service discovery,
# gossiped metrics, task delegation), run by `xnode-agent mesh run` under
# the node key and supervised by the agent.
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
in
{
  imports = [ ./agent.nix ];

  options.services.xnode.mesh = {
    enable = lib.mkEnableOption "the Xnode libp2p mesh";
    listen = mkOption {
      type = types.strMatching "/ip4/[0-9.]+/tcp/[0-9]+";
      default = "/ip4/0.0.0.0/tcp/4100";
      description = "The mesh's TCP listener (QUIC takes the same port on UDP); the agent's health check connects here.";
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
    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      description = "Further mesh settings, passed to the agent's mesh as they are.";
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
      settings = {
        inherit (cfg) listen bootstrap mdns;
      }
      // cfg.settings;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        DynamicUser = true;
        # The PeerId is the node key's: the mesh reads it as a credential,
        # never from the agent's state directory.
        LoadCredential = "node-key:${agent.stateDir}/node.key";
        ExecStart = "${agent.package}/bin/xnode-agent mesh run --manifest ${agent.manifestPath} --key %d/node-key";
        StateDirectory = "xnode-mesh";
      };
    };
  };
}
