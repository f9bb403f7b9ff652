# Scenario 4: a service published on one node is found from another. The
# publisher runs a web server and publishes it in the mesh under a name with
# its multiaddr; the seeker finds that name, gets the endpoint and the
# publisher's PeerId, and fetches a page from the endpoint it found. A name
# nobody published is not found.
#
# The seeker joins the mesh through the publisher: a bootstrap address ends
# in /p2p/<PeerId>, and the mesh reads its bootstrap peers only when it
# starts, so the publisher's PeerId must be known when the VMs are built.
# The publisher therefore boots with a fixed node key (TEST-ONLY, in the
# store for everyone to read), put in place before xnode-identity.service
# would make a random one; its PeerId is written below and checked at run
# time. The seeker keeps the first-boot key every node makes. (mDNS would
# need no PeerId, but the test network's multicast is not something the
# test should depend on, and servers run with mdns off.)
{ pkgs, self, ... }:
let
  common = import ./common { inherit pkgs self; };

  publisherAddress = "192.168.1.1";
  meshPort = 4100;
  # 32 bytes, the Ed25519 seed node.key holds; no trailing newline.
  publisherSeed = "xnode-vm-test-mesh-publisher-key";
  # `xnode-agent identity --state-dir DIR --json` with that seed as DIR/node.key.
  publisherPeerId = "12D3KooWHfe18eQBpPzk9zx8EHGq7v4VdUtSYQsBpfraJ5wp344U";

  meshNode =
    address: extra:
    { ... }:
    {
      imports = [ (common.staticAddress address) ];
      services.xnode.mesh = {
        enable = true;
        # Only the test network: the VMs' user-mode NIC (eth0) has the same
        # address on every VM.
        listen = "/ip4/${address}/tcp/${toString meshPort}";
        openFirewall = true;
      }
      // extra;
    };
in
pkgs.testers.runNixOSTest {
  name = "xnode-mesh";

  defaults.imports = [ common.node ];

  nodes = {
    publisher =
      { pkgs, config, ... }:
      let
        webRoot = pkgs.writeTextDir "hello.txt" "hello from the mesh\n";
        keyFile = pkgs.writeText "xnode-test-mesh-publisher-node.key" publisherSeed;
        stateDir = config.services.xnode.agent.stateDir;
      in
      {
        imports = [ (meshNode publisherAddress { }) ];

        # The fixed node key, before the identity service looks for one
        # (it makes a key only where there is none).
        systemd.services.xnode-test-node-key = {
          description = "xnode test: the publisher's fixed node key";
          wantedBy = [ "xnode-identity.service" ];
          before = [ "xnode-identity.service" ];
          unitConfig.ConditionPathExists = "!${stateDir}/node.key";
          serviceConfig.Type = "oneshot";
          script = ''
            install -d -m 0711 ${stateDir}
            install -m 0600 ${keyFile} ${stateDir}/node.key
          '';
        };

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
    seeker = meshNode "192.168.1.2" {
      bootstrap = [ "/ip4/${publisherAddress}/tcp/${toString meshPort}/p2p/${publisherPeerId}" ];
    };
  };

  globalTimeout = 900;

  testScript = ''
    import json

    NAME = "hello-web"
    ENDPOINT = "/ip4/${publisherAddress}/tcp/8080"
    PUBLISHER_ID = "${publisherPeerId}"
    # Every string anywhere in the --json output: the tests do not depend on
    # the shape of a record, only on what it must contain.
    STRINGS = "[.. | strings]"

    # The publisher first: the seeker dials its bootstrap peer once, when its
    # mesh starts, so the publisher's mesh must be listening by then.
    for machine in [publisher, seeker]:
        machine.start()
        machine.wait_until_succeeds("test -s /var/lib/xnode/node.key", timeout=120)
        machine.wait_for_unit("xnode-agent.service")
        # The agent, not a target, starts the mesh (so not wait_for_unit,
        # which gives up on an inactive unit with no job queued); it is
        # active (Type=notify) once it listens and serves its API.
        machine.wait_until_succeeds("systemctl is-active xnode-mesh.service", timeout=300)
        machine.wait_for_file("/run/xnode-mesh/api.sock")
    publisher.wait_for_unit("hello-web.service")

    with subtest("the publisher runs under the fixed key the seeker bootstraps from"):
        identity = json.loads(
            publisher.succeed("xnode-agent identity --state-dir /var/lib/xnode --json")
        )
        assert identity["peer_id"] == PUBLISHER_ID, f"publisher runs as {identity['peer_id']}"
        publisher.succeed(
            f"xnode-agent mesh status --json | jq -e --arg peer {PUBLISHER_ID}"
            f" '{STRINGS} | any(. == $peer)'"
        )

    with subtest("the seeker joins the mesh through the publisher"):
        seeker.wait_until_succeeds(
            f"xnode-agent mesh status --json | jq -e --arg peer {PUBLISHER_ID}"
            f" '{STRINGS} | any(. == $peer)'",
            timeout=120,
        )

    with subtest("the publisher publishes its web page"):
        publisher.succeed(f"xnode-agent mesh publish {NAME} --endpoint {ENDPOINT}")
        publisher.succeed(
            f"xnode-agent mesh status --json | jq -e --arg name {NAME} --arg ep {ENDPOINT}"
            f" '{STRINGS} | any(. == $name) and any(. == $ep)'"
        )

    with subtest("the seeker finds it, with its endpoint and the publisher's PeerId"):
        seeker.wait_until_succeeds(
            f"xnode-agent mesh find {NAME} --json | jq -e --arg ep {ENDPOINT} --arg peer {PUBLISHER_ID}"
            f" '{STRINGS} | any(. == $ep) and any(contains($peer))'",
            timeout=300,
        )
        print(seeker.succeed(f"xnode-agent mesh find {NAME} --json"))

    with subtest("the endpoint found serves the published page"):
        parts = ENDPOINT.split("/")  # ["", "ip4", address, "tcp", port]
        page = seeker.succeed(f"curl -sSf --max-time 10 http://{parts[2]}:{parts[4]}/hello.txt")
        assert page == "hello from the mesh\n", f"unexpected page: {page!r}"

    with subtest("a name nobody published is not found"):
        # `find` exits 3 when the mesh holds no live record of the name.
        status, out = seeker.execute("xnode-agent mesh find no-such-service --json")
        assert status == 3, f"find of an unpublished name exited {status}: {out}"
        assert ENDPOINT not in out, f"an unpublished name resolved to {ENDPOINT}: {out}"

    with subtest("the mesh reads the agent's socket and gossips its services' metrics"):
        # The mesh's dynamic user is in the agent socket's group: the seeker
        # hears the publisher's own `mesh` service, as its agent reports it.
        seeker.wait_until_succeeds(
            "xnode-agent mesh services --json | jq -e --arg id "
            + PUBLISHER_ID
            + " '.[] | select(.service == \"mesh\") | .nodes[] | select(.node == $id)'",
            timeout=120,
        )
        publisher.fail("journalctl -u xnode-mesh --no-pager | grep 'metrics from the agent'")

    with subtest("the agent reports the mesh healthy on both nodes"):
        for machine in [publisher, seeker]:
            machine.wait_until_succeeds(
                "xnode-agent status --json | jq -e --arg kind mesh"
                " '.services[] | select(.kind == $kind) | .healthy == true'",
                timeout=120,
            )
  '';
}
