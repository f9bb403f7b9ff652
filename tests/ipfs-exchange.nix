# Scenario 3: content added to kubo on one node is fetched by CID on
# another, over a private two-node swarm: no public bootstrap, nothing
# AutoConf would fetch. The bytes that arrive are the bytes that were added,
# the second node did not hold them before, and the agent on both nodes
# reports kubo healthy with its peer.
{ pkgs, self, ... }:
let
  inherit (pkgs) lib;
  common = import ./common { inherit pkgs self; };

  ipfsNode =
    address:
    { ... }:
    {
      imports = [ (common.staticAddress address) ];

      services.xnode.ipfs = {
        enable = true;
        openFirewall = true;
        # Only the test network: the VMs' user-mode NIC (eth0) has the same
        # address on every VM, which would only confuse the peers' dialling.
        swarm = [ "/ip4/${address}/tcp/4001" ];
        # Contact nothing public (docs/kubo.md, "Bootstrap is not the only
        # public contact"); the bootstrap list is empty by default. No mDNS
        # either: the nodes meet only by the `swarm connect` of the test.
        settings = {
          AutoConf.Enabled = false;
          Discovery.MDNS.Enabled = false;
          DNS.Resolvers = { };
          Routing.DelegatedRouters = [ ];
          Ipns.DelegatedPublishers = [ ];
        };
      };
    };
in
pkgs.testers.runNixOSTest {
  name = "xnode-ipfs-exchange";

  defaults.imports = [ common.node ];

  nodes = {
    ipfs1 = ipfsNode "192.168.1.1";
    ipfs2 = ipfsNode "192.168.1.2";
  };

  globalTimeout = 900;

  testScript =
    { nodes, ... }:
    let
      cfg = nodes.ipfs1.services.xnode.ipfs;
    in
    ''
      import json
      from typing import Any

      # The kubo CLI as the service's user, talking to the running daemon.
      IPFS = "runuser -u ipfs -- /run/current-system/sw/bin/env IPFS_PATH=${cfg.repo} ${lib.getExe' cfg.package "ipfs"}"


      def ipfs(machine: Any, args: str) -> str:
          return str(machine.succeed(f"{IPFS} {args}")).strip()


      def sha256(machine: Any, path: str) -> str:
          return str(machine.succeed(f"sha256sum {path}")).split()[0]


      start_all()
      for machine in [ipfs1, ipfs2]:
          machine.wait_for_unit("ipfs.service")
          machine.wait_until_succeeds(f"{IPFS} id >/dev/null", timeout=180)

      peer1 = ipfs(ipfs1, "id -f '<id>'")
      peer2 = ipfs(ipfs2, "id -f '<id>'")

      with subtest("ipfs1 adds a file of several blocks"):
          # About 2 MB of distinct lines: several 256 KiB chunks, no two alike.
          ipfs1.succeed("seq 1 300000 > /tmp/payload && chmod 0644 /tmp/payload")
          cid = ipfs(ipfs1, "add -Q --cid-version 1 /tmp/payload")
          assert cid.startswith("bafy"), f"ipfs add printed {cid!r}, not a CIDv1"
          expected = sha256(ipfs1, "/tmp/payload")

      with subtest("ipfs2 does not hold the content yet"):
          ipfs2.fail(f"timeout 30 {IPFS} --offline cat {cid} >/dev/null")

      with subtest("the two nodes connect"):
          ipfs2.succeed(f"{IPFS} swarm connect /ip4/192.168.1.1/tcp/4001/p2p/{peer1}")
          ipfs2.wait_until_succeeds(f"{IPFS} swarm peers | grep -q {peer1}", timeout=60)
          ipfs1.wait_until_succeeds(f"{IPFS} swarm peers | grep -q {peer2}", timeout=60)

      with subtest("ipfs2 fetches the content by CID and gets the same bytes"):
          ipfs2.succeed(f"timeout 300 {IPFS} cat {cid} > /tmp/fetched")
          got = sha256(ipfs2, "/tmp/fetched")
          assert got == expected, f"fetched sha256 {got}, added {expected}"
          # Now held locally: readable without the network.
          ipfs2.succeed(f"{IPFS} --offline cat {cid} | cmp - /tmp/fetched")

      with subtest("the agent reports kubo healthy with its peer on both nodes"):
          for machine in [ipfs1, ipfs2]:
              machine.wait_until_succeeds(
                  "xnode-agent status --json | jq -e --arg kind kubo"
                  " '.services[] | select(.kind == $kind)"
                  " | .healthy == true and .health.metrics.peers >= 1'",
                  timeout=120,
              )
              status = json.loads(machine.succeed("xnode-agent status --json"))
              kubo = [s for s in status["services"] if s["kind"] == "kubo"]
              print(f"{machine.name}: {kubo[0]['health']['detail']}")
    '';
}
