# `services.xnode.chain`: the Xnode chain's ABCI application
# (`xnode-chain serve`) beside CometBFT, supervised by the agent, and the
# node's part in the chain: re-attesting to it on a timer and seeding its
# assigned data source each block (docs/chain.md).
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.xnode.chain;
  agent = config.services.xnode.agent;
  cometbft = config.services.xnode.cometbft;
  agentBin = "${agent.package}/bin/xnode-agent";
  rpc = "http://${lib.removePrefix "tcp://" cometbft.rpcAddress}";
  key = "${agent.stateDir}/node.key";
  render = import ./lib/render.nix;

  # Attest to the chain's latest block hash and send the envelope.
  attestToChain = pkgs.writeShellScript "xnode-chain-attest" ''
    set -eu
    beacon=$(${agentBin} chain beacon --json --rpc ${rpc})
    hash=$(printf '%s' "$beacon" | ${pkgs.jq}/bin/jq -r .hash)
    height=$(printf '%s' "$beacon" | ${pkgs.jq}/bin/jq -r .height)
    env=$(mktemp)
    trap 'rm -f "$env"' EXIT
    ${agentBin} attest --state-dir ${agent.stateDir} --tcti ${agent.tcti} \
      --beacon "$hash" --out "$env"
    exec ${agentBin} chain attest --envelope "$env" --beacon-height "$height" \
      --rpc ${rpc} --key ${key} --wait \
      ${lib.optionalString (cfg.node.validatorKey != null) "--validator-key ${cfg.node.validatorKey}"}
  '';
in
{
  options.services.xnode.chain = {
    enable = lib.mkEnableOption "the Xnode chain's ABCI application, served to the local CometBFT";
    package = mkOption {
      type = types.package;
      default = agent.package;
      defaultText = lib.literalExpression "config.services.xnode.agent.package";
      description = "The package with `bin/xnode-chain` (the agent's package builds it).";
    };
    listen = mkOption {
      type = types.strMatching "127\\.0\\.0\\.1:[0-9]+";
      default = "127.0.0.1:26658";
      description = "Where the application listens for CometBFT (`proxy_app`); loopback only.";
    };
    stateDir = mkOption {
      type = types.strMatching "/var/lib/.+";
      default = "/var/lib/xnode-chain";
      description = "The committed state (state.json), resumed on restart.";
    };
    node = {
      attest = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "10min";
        description = "Re-attest this node to the chain this often (a systemd time span; keep it well inside the chain's attest_window); null: never.";
      };
      validatorKey = mkOption {
        type = types.nullOr (types.strMatching "[0-9a-f]{64}");
        default = null;
        description = "This node's CometBFT consensus public key (hex), registered with its attestations so its stake gives it voting power.";
      };
      seed = mkOption {
        type = types.bool;
        default = false;
        description = "Fetch this node's assigned data source every block, add it to the local kubo, and submit its CID.";
      };
      ipfsApi = mkOption {
        type = types.str;
        default = "127.0.0.1:5001";
        description = "kubo's RPC API (IP:PORT) for seeding.";
      };
    };
  };

  config = lib.mkMerge [
    (lib.mkIf cfg.enable {
      assertions = [
        {
          assertion = agent.enable;
          message = "services.xnode.chain needs the agent, which supervises it: set services.xnode.agent.enable = true.";
        }
        {
          assertion = !cometbft.enable || cometbft.proxyApp == "tcp://${cfg.listen}";
          message = "services.xnode.cometbft.proxyApp is ${cometbft.proxyApp}, but the chain application listens on ${cfg.listen}: leave proxyApp unset or set it to \"tcp://${cfg.listen}\".";
        }
      ];
      services.xnode.cometbft.proxyApp = lib.mkDefault "tcp://${cfg.listen}";
      services.xnode.services.xnode-chain = {
        description = "Xnode chain application (ABCI) for CometBFT";
        health.check = {
          type = "tcp";
          address = cfg.listen;
        };
        serviceConfig = {
          DynamicUser = true;
          ExecStart = "${cfg.package}/bin/xnode-chain serve --listen ${cfg.listen} --state-dir ${cfg.stateDir}";
          # Commit writes state.json and renames it; CometBFT replays what
          # follows on its next handshake.
          TimeoutStopSec = "30s";
        }
        // render.writableHome cfg.stateDir;
      };
    })
    # CometBFT connects to the application on start: the application first.
    # (Its own mkIf: a definition under a false one inside the entry would
    # still declare a `cometbft` service on a node without CometBFT.)
    (lib.mkIf (cfg.enable && cometbft.enable) {
      services.xnode.services.cometbft.dependsOn = [ "xnode-chain" ];
    })
    (lib.mkIf (cfg.node.attest != null) {
      systemd.services.xnode-chain-attest = {
        description = "Xnode: re-attest this node to the chain";
        after = [ "xnode-agent.service" ];
        serviceConfig = {
          Type = "oneshot";
          ExecStart = attestToChain;
        };
      };
      systemd.timers.xnode-chain-attest = {
        wantedBy = [ "timers.target" ];
        timerConfig = {
          OnActiveSec = "1min";
          OnUnitActiveSec = cfg.node.attest;
          RandomizedDelaySec = "30s";
        };
      };
    })
    (lib.mkIf cfg.node.seed {
      services.xnode.services.xnode-chain-seed = {
        description = "Xnode: seed this node's assigned data source to IPFS and the chain";
        dependsOn = lib.optional cometbft.enable "cometbft";
        serviceConfig = {
          ExecStart = "${agentBin} chain seed --ipfs-api ${cfg.node.ipfsApi} --rpc ${rpc} --key %d/node-key";
          LoadCredential = "node-key:${key}";
          DynamicUser = true;
        };
      };
    })
  ];
}
