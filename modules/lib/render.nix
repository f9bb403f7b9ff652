# The one renderer: a declared Xnode service becomes both its systemd unit
# and its entry in the agent's manifest (`xnode.manifest/v1`, whose schema
# the agent owns: agent/supervisor/src/manifest.rs). Builtins only, so CI
# evaluates it with a bare `nix-instantiate` and feeds the output to the
# agent's own parser.
let
  # nixpkgs lib's nameValuePair, written out: builtins only.
  nameValuePair = name: value: { inherit name value; };

  # Drop attributes whose value is null: optional manifest fields are left
  # out rather than written as null (the agent rejects unknown nulls).
  withoutNulls =
    attrs: removeAttrs attrs (builtins.filter (n: attrs.${n} == null) (builtins.attrNames attrs));

  unitStem =
    unit:
    let
      m = builtins.match "(.+)\\.service" unit;
    in
    if m == null then
      throw "xnode: '${unit}' is not a service unit (NAME.service)"
    else
      builtins.head m;

  healthCheck =
    check:
    withoutNulls {
      inherit (check) type;
      url = check.url or null;
      expect_status = check.expectStatus or null;
      address = check.address or null;
      command = check.command or null;
    };

  health =
    h:
    if h == null then
      null
    else
      withoutNulls {
        check = healthCheck h.check;
        interval_secs = h.intervalSecs or null;
        timeout_secs = h.timeoutSecs or null;
      };

  restart =
    r:
    if r == null then
      null
    else
      withoutNulls {
        unhealthy_after = r.unhealthyAfter or null;
        backoff_initial_secs = r.backoffInitialSecs or null;
        backoff_max_secs = r.backoffMaxSecs or null;
        give_up_after = r.giveUpAfter or null;
      };

  # The systemd baseline every Xnode unit starts from; a service loosens
  # only what it needs through its own serviceConfig.
  hardening = {
    NoNewPrivileges = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    DevicePolicy = "closed";
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectClock = true;
    ProtectHostname = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [
      "AF_UNIX"
      "AF_INET"
      "AF_INET6"
    ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [
      "@system-service"
      "~@privileged"
      "~@resources"
    ];
    SystemCallErrorNumber = "EPERM";
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    UMask = "0077";
  };
in
rec {
  inherit hardening unitStem;

  # [Service] settings that make a service's home writable under
  # ProtectSystem=strict: systemd creates and owns it (0700) when it lies
  # under /var/lib, else the path is only opened for writing.
  writableHome =
    path:
    let
      m = builtins.match "/var/lib/(.+)" path;
    in
    if m != null then
      {
        StateDirectory = builtins.head m;
        StateDirectoryMode = "0700";
      }
    else
      { ReadWritePaths = [ path ]; };

  # A declared service (the `services.xnode.services.<name>` submodule, or
  # the same attributes in a plain attrset) → its manifest entry.
  manifestEntry =
    svc:
    withoutNulls {
      inherit (svc) name unit kind;
      health = health (svc.health or null);
      depends_on = if (svc.dependsOn or [ ]) == [ ] then null else svc.dependsOn;
      restart = restart (svc.restart or null);
      settings = if (svc.settings or { }) == { } then null else svc.settings;
    };

  # The whole manifest, services in name order so the file is stable.
  manifest = services: {
    schema = "xnode.manifest/v1";
    services = map manifestEntry (builtins.sort (a: b: a.name < b.name) services);
  };

  # A declared service → the value of `systemd.services.<stem>`. Units are
  # not wanted by any target: the agent starts them in dependency order and
  # owns their restarts (Restart=no unless the service asks otherwise).
  # `byName` maps every declared service's name to it, for dependencies.
  systemdUnit =
    byName: svc:
    let
      undeclared = d: throw "xnode: service '${svc.name}' depends on '${d}', which is not declared";
      depUnits = map (d: byName.${d}.unit or (undeclared d)) (svc.dependsOn or [ ]);
    in
    {
      description = svc.description or "Xnode service ${svc.name}";
      after = depUnits ++ (svc.after or [ ]);
      wants = svc.wants or [ ];
      wantedBy = svc.wantedBy or [ ];
      unitConfig = svc.unitConfig or { };
      environment = svc.environment or { };
      path = svc.path or [ ];
      serviceConfig =
        (if svc.hardening or true then hardening else { })
        // {
          Restart = "no";
        }
        // (svc.serviceConfig or { });
    };

  # Every declared service's unit, keyed by unit stem.
  systemdUnits =
    services:
    let
      byName = builtins.listToAttrs (map (s: nameValuePair s.name s) services);
      unitOf = s: nameValuePair (unitStem s.unit) (systemdUnit byName s);
    in
    builtins.listToAttrs (map unitOf services);
}
