# Scenario 5: the negative paths. A supervised service killed with SIGKILL
# comes back because the agent restarts it (its unit has Restart=no, so
# systemd does not), and the agent's status counts that restart as its own.
# A report changed by one byte after it was signed is rejected by the
# verifier, which names the checks that failed: the node's signature and the
# TPM quote's binding to the report.
{ pkgs, self, ... }:
let
  common = import ./common { inherit pkgs self; };
in
pkgs.testers.runNixOSTest {
  name = "xnode-recovery";

  nodes.machine =
    { pkgs, ... }:
    let
      webRoot = pkgs.writeTextDir "health" "ok\n";
    in
    {
      imports = [ common.node ];

      # A generic service as an operator declares one: a web server on
      # loopback with an HTTP check, restart policy left at its defaults.
      services.xnode.services.hello = {
        kind = "generic";
        description = "xnode test: a web server on loopback";
        health.check = {
          type = "http";
          url = "http://127.0.0.1:8080/health";
        };
        serviceConfig = {
          ExecStart = "${pkgs.busybox}/bin/busybox httpd -f -p 127.0.0.1:8080 -h ${webRoot}";
          # Recovery is the agent's: systemd must not restart it by itself.
          Restart = "no";
        };
      };
    };

  globalTimeout = 900;

  testScript =
    common.attestPy
    + ''
      import time
      from typing import Callable

      NONCE = "7e57ab1e0ddba11c0ffee0000000000000000000000000000000000000000001"


      def hello() -> dict[str, Any]:
          """The agent's status of the service named hello."""
          status = json.loads(machine.succeed("xnode-agent status --json"))
          for service in status["services"]:
              if service["name"] == "hello":
                  return dict(service)
          names = [s["name"] for s in status["services"]]
          raise Exception(f"the agent does not supervise 'hello' (it has {names})")


      def wait_for_hello(what: str, ok: Callable[[dict[str, Any]], bool], timeout: int = 120) -> dict[str, Any]:
          deadline = time.monotonic() + timeout
          while True:
              service = hello()
              if ok(service):
                  return service
              if time.monotonic() > deadline:
                  raise Exception(
                      f"waited {timeout} s for {what}; the agent says: {json.dumps(service)}"
                  )
              time.sleep(1)


      def unit_property(unit: str, name: str) -> str:
          return machine.succeed(f"systemctl show -p {name} --value {unit}").strip()


      start_all()
      machine.wait_for_unit("xnode-agent.service")
      machine.wait_until_succeeds(f"test -s {STATE_DIR}/node.key", timeout=120)
      # Only this script attests (the periodic unit would at a random time).
      machine.succeed("systemctl stop xnode-attest.timer xnode-attest.service")

      with subtest("the agent supervises the declared service and finds it healthy"):
          before = wait_for_hello("hello to be active and healthy", lambda s: s["healthy"] is True)
          unit = str(before["unit"])
          restart = unit_property(unit, "Restart")
          assert restart == "no", f"{unit} has Restart={restart}: systemd, not the agent, would restart it"
          old_pid = unit_property(unit, "MainPID")
          assert old_pid != "0", f"{unit} has no main process"

      with subtest("a service killed with SIGKILL is restarted by the agent"):
          machine.succeed(f"systemctl kill --signal=KILL {unit}")
          after = wait_for_hello(
              "the agent to restart hello and see it pass a check again",
              lambda s: s["agent_restarts"] == before["agent_restarts"] + 1
              and s["healthy"] is True
              and s["last_recovery"] is not None
              and s["health"] is not None
              and s["health"]["at"] > s["last_recovery"]["active_at"],
          )
          recovery = after["last_recovery"]
          assert recovery["by"] == "agent", f"the recovery was not the agent's: {recovery}"
          assert after["systemd_recoveries"] == before["systemd_recoveries"], (
              f"systemd restarted it by itself: {after}"
          )
          assert unit_property(unit, "NRestarts") == "0", f"systemd restarted {unit} (NRestarts)"
          new_pid = unit_property(unit, "MainPID")
          assert new_pid not in ("0", old_pid), f"{unit} was not started again (MainPID {new_pid})"
          machine.succeed("curl -sSf --max-time 5 http://127.0.0.1:8080/health")
          print(f"recovered by the agent in {recovery['seconds']:.2f} s: {recovery}")

      with subtest("the node's untampered envelope verifies"):
          envelope, _ = attest(machine, NONCE, "envelope.json")
          registry = activate(machine, envelope)
          policy = ["--ek-ca", EK_CA, "--activations", str(registry), "--nonce", NONCE]
          code, result = verify(envelope, *policy)
          assert_verified(result, code)

      with subtest("a report with one byte changed after signing is rejected"):
          tampered = tamper_report(envelope, "envelope-tampered.json")
          code, result = verify(tampered, *policy)
          assert code == 1 and not result["ok"], f"a tampered report was accepted: {describe(result)}"
          # The quote itself is intact; it is the report that no longer
          # matches the node's signature nor the quote's qualifying data.
          assert failed(result) == ["node_signature", "binding"], describe(result)
          assert statuses(result)["quote_signature"] == "pass", describe(result)
          plain = host_agent("verify", str(tampered), *policy)
          assert plain.returncode == 1, f"verify exited {plain.returncode}"
          assert "REJECTED: 2 check(s) failed: node_signature, binding" in plain.stdout, plain.stdout
    '';
}
