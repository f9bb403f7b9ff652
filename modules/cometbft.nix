# `services.xnode.cometbft`: a CometBFT node (validator or full node),
# declared to the agent, which writes its config.toml and keys
# (`xnode-agent service init cometbft`) and checks that blocks advance.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;
  cfg = config.services.xnode.cometbft;
  agent = config.services.xnode.agent;
  ports = import ./lib/ports.nix;
  render = import ./lib/render.nix;

  keyFileType = types.nullOr (types.strMatching "/.*");
  laddr = types.strMatching "(tcp|unix)://.+";

  # A genesis is public: a store path is fine. A path literal is copied in.
  genesisPath = g: if builtins.isPath g then "${g}" else g;

  settings = lib.filterAttrs (_: v: v != null) {
    inherit (cfg) home moniker;
    chain_id = cfg.chainId;
    genesis = if cfg.genesis == null then null else genesisPath cfg.genesis;
    proxy_app = cfg.proxyApp;
    rpc_laddr = cfg.rpcAddress;
    p2p_laddr = cfg.p2pAddress;
    persistent_peers = cfg.persistentPeers;
    inherit (cfg) seeds;
    priv_validator_laddr = cfg.validator.remoteSigner;
    min_peers = cfg.minPeers;
    stall_secs = cfg.stallSecs;
    config = cfg.settings;
  };

  # An operator's key (from keyFile, through LoadCredential) is installed
  # once; a different key already in the home is never replaced.
  importKey = pkgs.writeShellScript "cometbft-import-validator-key" ''
    set -eu
    key="$CREDENTIALS_DIRECTORY/priv_validator_key"
    dest=${lib.escapeShellArg cfg.home}/config/priv_validator_key.json
    mkdir -p -m 0700 ${lib.escapeShellArg cfg.home}/config
    if [ ! -e "$dest" ]; then
      install -m 0600 "$key" "$dest"
      echo "installed the validator key from ${cfg.validator.keyFile}"
    elif ! ${pkgs.diffutils}/bin/cmp -s "$key" "$dest"; then
      echo "$dest differs from ${cfg.validator.keyFile}: refusing to replace a validator key (double-signing risk)." >&2
      echo "Move $dest away by hand if the new key is intended." >&2
      exit 1
    fi
  '';

  p2pPort = ports.parse cfg.p2pAddress;
in
{
  imports = [ ./agent.nix ];

  options.services.xnode.cometbft = {
    enable = lib.mkEnableOption "a CometBFT node supervised by the Xnode agent";
    package = mkOption {
      type = types.package;
      default = pkgs.cometbft;
      defaultText = lib.literalExpression "pkgs.cometbft";
      description = "CometBFT (v0.38; the flake builds it, nixpkgs has none).";
    };
    home = mkOption {
      type = types.strMatching "/.+";
      default = "/var/lib/xnode/cometbft";
      description = "The node home (`cometbft --home`): config/, data/ and the keys made on first start.";
    };
    moniker = mkOption {
      type = types.str;
      default = config.networking.hostName;
      defaultText = lib.literalExpression "config.networking.hostName";
      description = "The node's name on the network.";
    };
    chainId = mkOption {
      type = types.strMatching "[[:print:]]{1,50}";
      example = "xnode-testnet-1";
      description = "The chain; must equal the genesis' chain_id.";
    };
    genesis = mkOption {
      type = types.nullOr (types.either types.path types.str);
      default = null;
      description = "The genesis.json installed as config/genesis.json on first start (public: the store is fine).";
    };
    proxyApp = mkOption {
      type = types.str;
      default = "tcp://127.0.0.1:26658";
      description = "The ABCI application's address, or a built-in app (`kvstore` for tests).";
    };
    rpcAddress = mkOption {
      type = types.strMatching "tcp://.+:[0-9]+";
      default = "tcp://127.0.0.1:26657";
      description = "`[rpc] laddr`; the agent's health check reads it.";
    };
    p2pAddress = mkOption {
      type = laddr;
      default = "tcp://0.0.0.0:26656";
      description = "`[p2p] laddr`.";
    };
    persistentPeers = mkOption {
      type = types.listOf (types.strMatching "[0-9a-f]{40}@.+:[0-9]+");
      default = [ ];
      description = "Peers to stay connected to, `NODEID@host:port`.";
    };
    seeds = mkOption {
      type = types.listOf (types.strMatching "[0-9a-f]{40}@.+:[0-9]+");
      default = [ ];
      description = "Seed nodes, `NODEID@host:port`.";
    };
    minPeers = mkOption {
      type = types.ints.unsigned;
      default = 0;
      description = "Fewer connected peers is unhealthy.";
    };
    stallSecs = mkOption {
      type = types.numbers.positive;
      default = 30;
      description = "How long the latest height may stay unchanged before the node is unhealthy.";
    };
    openFirewall = mkOption {
      type = types.bool;
      default = true;
      description = "Open the P2P port.";
    };
    validator = {
      enable = lib.mkEnableOption "signing blocks (this node is a validator)";
      generateKey = mkOption {
        type = types.bool;
        default = false;
        description = "Make the validator key on first start, in the home (0600), when no keyFile or remote signer is set.";
      };
      keyFile = mkOption {
        type = keyFileType;
        default = null;
        example = "/var/lib/xnode/secrets/priv_validator_key.json";
        description = "An existing priv_validator_key.json (an absolute path outside the store), installed in the home on first start.";
      };
      remoteSigner = mkOption {
        type = types.nullOr laddr;
        default = null;
        example = "tcp://127.0.0.1:26659";
        description = "Where CometBFT listens for a remote signer (TMKMS, Horcrux), which then holds the key.";
      };
    };
    settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
      example = {
        consensus.timeout_commit = "1s";
        log_level = "info";
      };
      description = "Extra config.toml keys, deep-merged over the rendered ones (docs/cometbft.md lists the keys that have their own option).";
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = agent.enable;
        message = "services.xnode.cometbft needs the agent, which writes its config and supervises it: set services.xnode.agent.enable = true.";
      }
      {
        assertion =
          !cfg.validator.enable
          || cfg.validator.keyFile != null
          || cfg.validator.remoteSigner != null
          || cfg.validator.generateKey;
        message = "services.xnode.cometbft.validator is enabled without a key: set validator.keyFile to an absolute path outside the store (e.g. \"/var/lib/xnode/secrets/priv_validator_key.json\"), set validator.remoteSigner for TMKMS/Horcrux, or set validator.generateKey = true to make one on first start.";
      }
      {
        assertion = cfg.validator.keyFile == null || !lib.hasPrefix builtins.storeDir cfg.validator.keyFile;
        message = "services.xnode.cometbft.validator.keyFile is in the Nix store, where every user can read it: put the key outside the store (e.g. /var/lib/xnode/secrets/) and give that path as a string.";
      }
      {
        assertion = cfg.validator.keyFile == null || cfg.validator.remoteSigner == null;
        message = "services.xnode.cometbft.validator has both keyFile and remoteSigner: with a remote signer the signer holds the key; unset one of them.";
      }
      {
        assertion = cfg.genesis != null;
        message = "services.xnode.cometbft.genesis is not set: give the chain's genesis.json (a path; it is public).";
      }
    ];

    users.users.cometbft = {
      isSystemUser = true;
      group = "cometbft";
      home = cfg.home;
    };
    users.groups.cometbft = { };

    networking.firewall.allowedTCPPorts = lib.optional (cfg.openFirewall && p2pPort != null) p2pPort.port;

    environment.systemPackages = [ cfg.package ];

    services.xnode.services.cometbft = {
      kind = "cometbft";
      description = "CometBFT node ${cfg.moniker} on ${cfg.chainId}";
      inherit settings;
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      serviceConfig = {
        User = "cometbft";
        Group = "cometbft";
        ExecStartPre =
          lib.optional (cfg.validator.keyFile != null) importKey
          ++ [ "${agent.package}/bin/xnode-agent service init cometbft --manifest ${agent.manifestPath}" ];
        ExecStart = "${cfg.package}/bin/cometbft start --home ${lib.escapeShellArg cfg.home}";
        LoadCredential = lib.optional (
          cfg.validator.keyFile != null
        ) "priv_validator_key:${cfg.validator.keyFile}";
        LimitNOFILE = 65536;
        # CometBFT flushes its WAL and block store on SIGTERM.
        TimeoutStopSec = "60s";
      }
      // render.writableHome cfg.home;
      path = [ pkgs.coreutils ];
    };
  };
}
