# The golden manifest (tests/fixtures/manifest.json), declared the way the
# NixOS modules declare services, rendered by modules/lib/render.nix with
# builtins only. CI checks that the result equals the golden file, that the
# agent's parser accepts it, and that the units match render-units.json.
let
  render = import ../../modules/lib/render.nix;
  fakeStore = name: "/nix/store/00000000000000000000000000000000-${name}";

  services = [
    {
      name = "cometbft";
      unit = "cometbft.service";
      kind = "cometbft";
      health = {
        check.type = "kind";
        intervalSecs = 5;
        timeoutSecs = 2;
      };
      dependsOn = [ "ipfs" ];
      restart = {
        unhealthyAfter = 3;
        backoffInitialSecs = 1;
        backoffMaxSecs = 60;
        giveUpAfter = 5;
      };
      settings = {
        home = "/var/lib/cometbft";
        moniker = "xnode-validator-1";
        chain_id = "xnode-testnet-1";
        genesis = "/etc/xnode/cometbft/genesis.json";
        rpc_laddr = "tcp://127.0.0.1:26657";
        p2p_laddr = "tcp://0.0.0.0:26656";
        persistent_peers = [
          "5576458aef205977e18fd50b274e9b5d9014525a@10.20.0.11:26656"
          "b93270b358a72a2db30089f3856475bb1f918d6d@10.20.0.12:26656"
        ];
        seeds = [ "e3a2c6f1b0d9487a5c4f3e2d1c0b9a8f7e6d5c4b@seed.xnode.example:26656" ];
        priv_validator_laddr = null;
        min_peers = 3;
        stall_secs = 30;
        config = {
          consensus.timeout_commit = "1s";
          log_level = "info";
        };
      };
      serviceConfig = {
        User = "cometbft";
        ExecStart = "${fakeStore "cometbft-0.38.21"}/bin/cometbft start --home /var/lib/cometbft";
      };
    }
    {
      name = "ipfs";
      unit = "ipfs.service";
      kind = "kubo";
      health = {
        check.type = "kind";
        intervalSecs = 10;
        timeoutSecs = 3;
      };
      restart = {
        unhealthyAfter = 3;
        backoffInitialSecs = 2;
        backoffMaxSecs = 120;
        giveUpAfter = 5;
      };
      settings = {
        repo = "/var/lib/ipfs";
        api = "/ip4/127.0.0.1/tcp/5001";
        gateway = "/ip4/127.0.0.1/tcp/8080";
        swarm = [
          "/ip4/0.0.0.0/tcp/4001"
          "/ip4/0.0.0.0/udp/4001/quic-v1"
        ];
        bootstrap = [
          "/dns4/boot-1.xnode.example/tcp/4001/p2p/12D3KooW9yhjWbyY7SmjHdDJdGFBJ6qfZ7jxvhr2hjb2MBA2jED3"
          "/dns4/boot-2.xnode.example/udp/4001/quic-v1/p2p/12D3KooWDD1S8yZKCtyrRVxstsK4BtCzL111in8928fjYQvMiv8W"
        ];
        storage_max = "100GB";
        min_peers = 1;
        config = {
          Datastore = {
            StorageGCWatermark = 90;
            GCPeriod = "1h";
          };
          Swarm.ConnMgr = {
            LowWater = 50;
            HighWater = 200;
          };
        };
      };
      environment.IPFS_PATH = "/var/lib/ipfs";
      serviceConfig.ExecStart = "${fakeStore "kubo-0.36.0"}/bin/ipfs daemon";
    }
    {
      name = "mesh";
      unit = "xnode-mesh.service";
      kind = "mesh";
      dependsOn = [ "cometbft" ];
      settings.listen = "/ip4/0.0.0.0/tcp/4100";
      serviceConfig.DynamicUser = true;
    }
    {
      name = "metrics-exporter";
      unit = "node-exporter.service";
      kind = "generic";
      health = {
        check = {
          type = "http";
          url = "http://127.0.0.1:9100/metrics";
        };
        intervalSecs = 15;
      };
      restart = {
        unhealthyAfter = 2;
        backoffInitialSecs = 5;
        backoffMaxSecs = 300;
        giveUpAfter = 10;
      };
      # A unit that sets its own Restart= keeps it; no hardening baseline.
      hardening = false;
      serviceConfig = {
        ExecStart = "${fakeStore "prometheus-node-exporter"}/bin/node_exporter";
        Restart = "always";
      };
    }
  ];
in
{
  manifest = render.manifest services;
  units = render.systemdUnits services;
}
