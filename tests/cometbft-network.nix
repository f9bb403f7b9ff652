# Scenario 2: four validators form one CometBFT network and produce blocks,
# and the agent on every node reports CometBFT healthy.
#
# The genesis lists four validators whose keys are fixed before the VMs are
# built: tests/fixtures/nixos/cometbft (TEST-ONLY keys, see its README).
# Each node imports its validator key through
# services.xnode.cometbft.validator.keyFile; its node key is put into the
# CometBFT home before the first start (no module option takes one, and the
# home keeps a valid key it finds), so the node ids in persistentPeers are
# known at build time. The ABCI application is Xnode's own (`xnode-chain
# serve`, services.xnode.chain), started from the genesis' app_state.
# TEST-ONLY: the chain's faucet and authority key is 32 bytes of 0x07.
{ pkgs, self, ... }:
let
  inherit (pkgs) lib;
  common = import ./common { inherit pkgs self; };
  fixtures = ./fixtures/nixos/cometbft;
  network = lib.importJSON (fixtures + "/network.json");
  p2pPort = 26656;
  rpc = "http://127.0.0.1:26657";

  validator =
    me:
    { config, lib, ... }:
    let
      home = config.services.xnode.cometbft.home;
      others = lib.filter (n: n.name != me.name) network.nodes;
    in
    {
      virtualisation.memorySize = 1536;

      # Fixed, so the peers below cannot drift from the driver's addresses.
      imports = [ (common.staticAddress me.ip) ];

      # Outside the store, root-only-readable at a fixed path, the way an
      # operator provides a validator key.
      environment.etc."xnode-test/cometbft/priv_validator_key.json" = {
        source = fixtures + "/${me.name}/priv_validator_key.json";
        mode = "0400";
      };

      services.xnode.cometbft = {
        enable = true;
        moniker = me.name;
        chainId = network.chain_id;
        genesis = "${fixtures + "/genesis.json"}";
        p2pAddress = "tcp://0.0.0.0:${toString p2pPort}";
        persistentPeers = map (n: "${n.node_id}@${n.ip}:${toString p2pPort}") others;
        validator = {
          enable = true;
          generateKey = false;
          keyFile = "/etc/xnode-test/cometbft/priv_validator_key.json";
        };
        openFirewall = true;
        # Four VMs may boot a minute apart: a node waiting for its peers
        # sits at the genesis height until 2/3 of the power is online.
        stallSecs = 120;
        # 192.168.1.0/24 is not routable; CometBFT's address book would
        # otherwise drop those addresses.
        settings.p2p.addr_book_strict = false;
      };

      services.xnode.chain.enable = true;

      systemd.services.xnode-test-cometbft-node-key = {
        description = "Put the test node key into the CometBFT home";
        requiredBy = [ "cometbft.service" ];
        before = [ "cometbft.service" ];
        # /var/lib/xnode is the agent's (xnode-identity.service makes it).
        after = [ "xnode-identity.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          if [ ! -e ${home}/config/node_key.json ]; then
            group=$(id -gn cometbft)
            install -d -m 0700 -o cometbft -g "$group" ${home} ${home}/config
            install -m 0600 -o cometbft -g "$group" \
              ${fixtures + "/${me.name}/node_key.json"} ${home}/config/node_key.json
          fi
        '';
      };
    };

  pythonNodes = lib.concatMapStrings (n: ''
    "${n.name}": (${n.name}, "${n.node_id}", "${n.validator_address}"),
  '') network.nodes;
in
pkgs.testers.runNixOSTest {
  name = "xnode-cometbft-network";

  defaults.imports = [ common.node ];

  nodes = lib.listToAttrs (map (n: lib.nameValuePair n.name (validator n)) network.nodes);

  globalTimeout = 1800;

  testScript = ''
    import json
    from typing import Any

    CHAIN_ID = "${network.chain_id}"
    BOB = "1398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93ca"
    RPC = "${rpc}"
    # name: (machine, node id, validator address), from the fixtures
    NODES = {
    ${pythonNodes}}


    def rpc(machine: Any, path: str) -> Any:
        body = json.loads(machine.succeed(f"curl -sSf --max-time 10 '{RPC}/{path}'"))
        if "result" not in body:
            raise Exception(f"{machine.name}: /{path} answered {body}")
        return body["result"]


    def wait_all(what: str, command: str, timeout: int) -> None:
        for name, (machine, _, _) in NODES.items():
            with subtest(f"{name}: {what}"):
                machine.wait_until_succeeds(command, timeout=timeout)


    start_all()
    for machine, _, _ in NODES.values():
        machine.wait_for_unit("xnode-agent.service")

    wait_all("CometBFT answers on RPC", f"curl -sSf --max-time 5 {RPC}/status", 600)

    with subtest("every node runs with its fixture node key and validator key"):
        for name, (machine, node_id, address) in NODES.items():
            status = rpc(machine, "status")
            assert status["node_info"]["network"] == CHAIN_ID, f"{name}: {status['node_info']}"
            assert status["node_info"]["id"] == node_id, (
                f"{name} runs as node {status['node_info']['id']}, not the fixture's {node_id}"
            )
            assert status["validator_info"]["address"] == address, (
                f"{name} signs as {status['validator_info']['address']}, not the fixture's {address}"
            )

    wait_all(
        "connected to the three other validators",
        f"curl -sSf --max-time 5 {RPC}/net_info | jq -e '(.result.n_peers | tonumber) >= 3'",
        600,
    )
    wait_all(
        "the chain reaches height 5",
        f"curl -sSf --max-time 5 {RPC}/status"
        " | jq -e '(.result.sync_info.latest_block_height | tonumber) >= 5'",
        600,
    )

    with subtest("all nodes hold the same chain, validated by the four of them"):
        hashes = {
            name: rpc(machine, "block?height=3")["block_id"]["hash"]
            for name, (machine, _, _) in NODES.items()
        }
        assert len(set(hashes.values())) == 1, f"the nodes disagree on block 3: {hashes}"
        validators = rpc(validator1, "validators")["validators"]
        got = sorted(v["address"] for v in validators)
        want = sorted(address for (_, _, address) in NODES.values())
        assert got == want, f"validator set {got}, expected {want}"

    with subtest("a signed transfer sent to one validator is committed on all"):
        # The genesis faucet (TEST-ONLY key: 32 bytes of 0x07) pays BOB.
        validator1.succeed("printf '\\007%.0s' $(seq 32) > /root/faucet.key")
        validator1.succeed(
            f"xnode-agent chain transfer --to {BOB} --amount 1234 --key /root/faucet.key --wait"
        )
        for name, (machine, _, _) in NODES.items():
            machine.wait_until_succeeds(
                f"xnode-agent chain query /account/{BOB} | jq -e '.balance == 1234'",
                timeout=60,
            )
        # An overdraft is refused with its code (6: funds) and changes nothing.
        out = validator1.fail(
            f"xnode-agent chain transfer --to {BOB} --amount 999999999 --key /root/faucet.key --wait 2>&1"
        )
        assert "code 6" in out, out

    with subtest("the application's state agrees on every validator"):
        # The app hash is in every block header: equal headers at a height
        # mean four instances of the application reached the same state.
        tip = min(
            int(rpc(m, "status")["sync_info"]["latest_block_height"]) for m, _, _ in NODES.values()
        )
        app_hashes = {
            name: rpc(machine, f"block?height={tip}")["block"]["header"]["app_hash"]
            for name, (machine, _, _) in NODES.items()
        }
        assert len(set(app_hashes.values())) == 1, f"app hashes differ at {tip}: {app_hashes}"
        assert all(app_hashes.values()), f"empty app hash: {app_hashes}"

    wait_all(
        "the agent reports CometBFT healthy",
        "xnode-agent status --json | jq -e --arg kind cometbft"
        " '.services[] | select(.kind == $kind)"
        " | .healthy == true and .health.metrics.height >= 5"
        " and .health.metrics.catching_up == false and .health.metrics.peers >= 3'",
        180,
    )

    wait_all(
        "the agent reports the chain application healthy",
        "xnode-agent status --json | jq -e"
        " '.services[] | select(.name == \"xnode-chain\") | .healthy == true'",
        120,
    )

    with subtest("the agent's view of each node"):
        for name, (machine, _, _) in NODES.items():
            status = json.loads(machine.succeed("xnode-agent status --json"))
            cometbft = [s for s in status["services"] if s["kind"] == "cometbft"]
            assert len(cometbft) == 1, f"{name}: {len(cometbft)} CometBFT services in the status"
            print(f"{name}: {cometbft[0]['health']['detail']}")
  '';
}
