# NEEDS `xnode-agent mesh` (run, publish, find, services), which arrives with
# the mesh work; until then it waits in tests/pending/, out of the checks.
#
# Scenario 4: a service published on one node is found from another. The
# publisher runs a web server and publishes it in the mesh under a name with
# its multiaddr; the seeker finds that name, gets the endpoint and the
# publisher's PeerId, and fetches a page from the endpoint it found. A name
# nobody published is not found.
#
# The two nodes meet by mDNS on the test network (the publisher's PeerId,
# from its first-boot node key, is not known when the VMs are built, so it
# cannot be a bootstrap address).
{ pkgs, self, ... }:
let
  common = import ../common { inherit pkgs self; };

  meshNode =
    address:
    { ... }:
    {
      imports = [ (common.staticAddress address) ];
      # mDNS (UDP 5353) on the test network.
      networking.firewall.allowedUDPPorts = [ 5353 ];

      services.xnode.mesh = {
        enable = true;
        # Only the test network: the VMs' user-mode NIC (eth0) has the same
        # address on every VM.
        listen = "/ip4/${address}/tcp/4100";
        mdns = true;
        openFirewall = true;
      };
    };
in
pkgs.testers.runNixOSTest {
  name = "xnode-mesh";

  defaults.imports = [ common.node ];

  nodes = {
    publisher =
      { pkgs, ... }:
      let
        webRoot = pkgs.writeTextDir "hello.txt" "hello from the mesh\n";
      in
      {
        imports = [ (meshNode "192.168.1.1") ];

        # The service to publish: a page on the test network.
        systemd.services.hello-web = {
          description = "xnode test: a web page to publish in the mesh";
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            ExecStart = "${pkgs.busybox}/bin/busybox httpd -f -p 8080 -h ${webRoot}";
            DynamicUser = true;
          };
        };
        networking.firewall.allowedTCPPorts = [ 8080 ];
      };
    seeker = meshNode "192.168.1.2";
  };

  globalTimeout = 900;

  testScript = ''
    import json

    NAME = "hello-web"
    ENDPOINT = "/ip4/192.168.1.1/tcp/8080"
    # Every string anywhere in the --json output: the tests do not depend on
    # the shape of a record, only on what it must contain.
    STRINGS = "[.. | strings]"

    start_all()
    for machine in [publisher, seeker]:
        machine.wait_for_unit("xnode-mesh.service")
        machine.wait_until_succeeds("test -s /var/lib/xnode/node.key", timeout=120)
    publisher.wait_for_unit("hello-web.service")
    publisher_id = json.loads(
        publisher.succeed("xnode-agent identity --state-dir /var/lib/xnode --json")
    )["peer_id"]

    with subtest("the publisher publishes its web page"):
        publisher.succeed(f"xnode-agent mesh publish {NAME} --endpoint {ENDPOINT}")
        publisher.succeed(
            f"xnode-agent mesh services --json | jq -e --arg name {NAME} --arg ep {ENDPOINT}"
            f" '{STRINGS} | any(. == $name) and any(. == $ep)'"
        )

    with subtest("the seeker finds it, with its endpoint and the publisher's PeerId"):
        seeker.wait_until_succeeds(
            f"xnode-agent mesh find {NAME} --json | jq -e --arg ep {ENDPOINT} --arg peer {publisher_id}"
            f" '{STRINGS} | any(. == $ep) and any(contains($peer))'",
            timeout=300,
        )
        print(seeker.succeed(f"xnode-agent mesh find {NAME} --json"))

    with subtest("the endpoint found serves the published page"):
        parts = ENDPOINT.split("/")  # ["", "ip4", address, "tcp", port]
        page = seeker.succeed(f"curl -sSf --max-time 10 http://{parts[2]}:{parts[4]}/hello.txt")
        assert page == "hello from the mesh\n", f"unexpected page: {page!r}"

    with subtest("a name nobody published is not found"):
        _, out = seeker.execute("xnode-agent mesh find no-such-service --json")
        assert ENDPOINT not in out, f"an unpublished name resolved to {ENDPOINT}: {out}"

    with subtest("the agent reports the mesh healthy on both nodes"):
        for machine in [publisher, seeker]:
            machine.wait_until_succeeds(
                "xnode-agent status --json | jq -e --arg kind mesh"
                " '.services[] | select(.kind == $kind) | .healthy == true'",
                timeout=120,
            )
  '';
}
