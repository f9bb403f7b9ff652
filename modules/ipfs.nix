# `services.xnode.ipfs`: a kubo (IPFS) node declared to the agent, which
# patches its config (`xnode-agent service init ipfs`: RPC and gateway on
# loopback, swarm, bootstrap, storage) and checks id, peers and repo.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.xnode.ipfs;
  agent = config.services.xnode.agent;
  ports = import ./lib/ports.nix;
  render = import ./lib/render.nix;

  settings = {
    inherit (cfg) repo api gateway swarm bootstrap;
    storage_max = cfg.storageMax;
    min_peers = cfg.minPeers;
    config = cfg.settings;
  };

  # `ipfs init` once; the agent's init then owns the fields it manages.
  initRepo = pkgs.writeShellScript "ipfs-init-repo" ''
    set -eu
    if [ ! -e "$IPFS_PATH/config" ]; then
      ${cfg.package}/bin/ipfs init --profile server --empty-repo
    fi
  '';

  swarmPorts = map ports.parse cfg.swarm;
  listensOn = proto: p: p != null && p.proto == proto && p.port != 0;
  portsOf = proto: map (p: p.port) (builtins.filter (listensOn proto) swarmPorts);
in
{
  imports = [ ./agent.nix ];

  options.services.xnode.ipfs = {
    enable = lib.mkEnableOption "a kubo (IPFS) node supervised by the Xnode agent";
    package = mkOption {
      type = types.package;
      default = pkgs.kubo;
      defaultText = lib.literalExpression "pkgs.kubo";
      description = "kubo.";
    };
    repo = mkOption {
      type = types.strMatching "/.+";
      default = "/var/lib/xnode/ipfs";
      description = "The repository (IPFS_PATH), made by `ipfs init --profile server` on first start.";
    };
    api = mkOption {
      type = types.str;
      default = "/ip4/127.0.0.1/tcp/5001";
      description = "The RPC listener; loopback only (it grants admin access).";
    };
    gateway = mkOption {
      type = types.str;
      default = "/ip4/127.0.0.1/tcp/8080";
      description = "The HTTP gateway; loopback only (publish it through a reverse proxy).";
    };
    swarm = mkOption {
      type = types.listOf types.str;
      default = [
        "/ip4/0.0.0.0/tcp/4001"
        "/ip4/0.0.0.0/udp/4001/quic-v1"
      ];
      description = "The libp2p listeners.";
    };
    bootstrap = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "Bootstrap peers (`…/p2p/<peer ID>`). Empty: no public bootstrap.";
    };
    storageMax = mkOption {
      type = types.str;
      default = "10GB";
      description = "`Datastore.StorageMax`, in kubo's syntax.";
    };
    minPeers = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Fewer connected swarm peers is unhealthy.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Open the swarm ports.";
    };
    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = {
        Datastore.GCPeriod = "1h";
      };
      description = "Anything else in kubo's config, deep-merged last (docs/kubo.md).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = agent.enable;
        message = "services.xnode.ipfs needs the agent, which writes its config and supervises it: set services.xnode.agent.enable = true.";
      }
    ];

    users.users.ipfs = {
      isSystemUser = true;
      group = "ipfs";
      home = cfg.repo;
    };
    users.groups.ipfs = { };

    networking.firewall = lib.mkIf cfg.openFirewall {
      allowedTCPPorts = portsOf "tcp";
      allowedUDPPorts = portsOf "udp";
    };

    environment.systemPackages = [ cfg.package ];

    services.xnode.services.ipfs = {
      kind = "kubo";
      description = "IPFS (kubo) node";
      inherit settings;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      environment.IPFS_PATH = cfg.repo;
      serviceConfig = {
        User = "ipfs";
        Group = "ipfs";
        ExecStartPre = [
          initRepo
          "${agent.package}/bin/xnode-agent service init ipfs --manifest ${agent.manifestPath}"
        ];
        ExecStart = "${cfg.package}/bin/ipfs daemon --migrate=false";
        LimitNOFILE = 65536;
        # kubo opens netlink to list interfaces for its addresses.
        RestrictAddressFamilies = [
          "AF_UNIX"
          "AF_INET"
          "AF_INET6"
          "AF_NETLINK"
        ];
      }
      // render.writableHome cfg.repo;
    };
  };
}
