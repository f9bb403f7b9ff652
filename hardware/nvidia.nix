# NVIDIA data-center GPUs (T4, A100, H100, L4/L40, B200, ...) on a
# headless node: the data-center driver, the persistence daemon, NVML
# for the agent, and fabric manager where NVSwitches need it.
#
# Settings are lib.mkDefault (lists merge, so they are plain). If the host
# has a nixos-facter report, it must list an NVIDIA GPU: a GPU profile on
# a host without one is a configuration mistake, caught at evaluation.
{
  config,
  lib,
  options,
  pkgs,
  ...
}:
let
  nvidia = config.hardware.nvidia;
  facter = config.hardware.facter;

  # nixos-facter's report lists devices by class under `hardware`
  # (graphics_card, bridge, ...), each with `vendor.value` (the PCI vendor
  # ID as a number) and `base_class.value` (3 = display controller, which
  # covers VGA 0x0300 and 3D 0x0302 controllers such as the H100).
  reportDevices = lib.concatLists (
    lib.mapAttrsToList (_: v: if builtins.isList v then v else [ ]) (facter.report.hardware or { })
  );
  isNvidiaGpu =
    device:
    let
      vendor = device.vendor or null;
      class = device.base_class or null;
    in
    builtins.isAttrs device
    && builtins.isAttrs vendor
    && (vendor.value or null) == 4318 # 0x10de, NVIDIA
    && (vendor.type or "pci") == "pci"
    && (!builtins.isAttrs class || (class.value or 3) == 3);
  reportHasNvidiaGpu = builtins.any isNvidiaGpu reportDevices;
  reportName =
    if facter.reportPath != null then
      "the nixos-facter report ${toString facter.reportPath}"
    else
      "the nixos-facter report in hardware.facter.report";

  # Fabric manager sets up NVLink through NVSwitches (HGX/DGX boards); on a
  # PCIe GPU host it has nothing to do and would fail on every boot. An
  # NVSwitch is an NVIDIA PCI device of class 0x0680 (bridge, other).
  nvswitchPresent = pkgs.writeShellScript "nvswitch-present" ''
    for dev in /sys/bus/pci/devices/*; do
      read -r vendor <"$dev/vendor" || continue
      read -r class <"$dev/class" || continue
      if [ "$vendor" = 0x10de ] && [ "$class" = 0x068000 ]; then
        exit 0
      fi
    done
    echo "no NVSwitch on this host: fabric manager is not needed"
    exit 1
  '';

  # The driver's unfree parts, by package name (`lib.getName`), across
  # nixpkgs versions: the X11 and data-center userspace, the closed kernel
  # modules, fabric manager. The open kernel modules are MIT/GPL.
  unfreeDriverNames = [
    "nvidia-x11"
    "nvidia-dc"
    "nvidia-kernel-modules"
    "nvidia-settings"
    "nvidia-persistenced"
    "fabricmanager"
    "nvidia-fabricmanager"
  ];
in
{
  config = lib.mkMerge [
    {
      assertions = [
        {
          assertion = facter.report == { } || reportHasNvidiaGpu;
          message = ''
            hardware/nvidia.nix is in this configuration, but ${reportName}
            lists no NVIDIA GPU (PCI vendor 0x10de). Either:
              - this host has no NVIDIA GPU: remove the NVIDIA profile
                (nixosModules.hardware-nvidia) from its configuration; or
              - the report is stale or from another machine: on the GPU host, run
                `sudo nixos-facter -o facter.json` (the Xnode live USB has it) and
                point xnode.hardware.facterReport at the new file.
          '';
        }
      ];

      # The data-center driver (nvidiaPackages.dc): headless, with fabric
      # manager and persistenced, and no X11 or desktop parts.
      hardware.nvidia.datacenter.enable = lib.mkDefault true;

      # Open kernel modules: NVIDIA's recommended modules for Turing and newer
      # (T4, A100, H100, L4/L40) and the only ones for Blackwell (B200).
      # Set false for Volta (V100) and older, which only the closed modules drive.
      hardware.nvidia.open = lib.mkDefault true;

      # Keep the driver initialised while no process holds the GPU: the first
      # NVML or CUDA call is then fast, and the agent's probe does not
      # re-initialise the GPUs every time.
      hardware.nvidia.nvidiaPersistenced = lib.mkDefault true;

      # /run/opengl-driver/lib, where libnvidia-ml.so (NVML) lives, exists only
      # with the graphics driver set enabled; the driver adds itself to it.
      hardware.graphics.enable = lib.mkDefault true;

      # The GSP firmware: the open modules need it, and newer closed ones use
      # it. nixpkgs installs it for the X11 driver only (NixOS/nixpkgs#454772).
      hardware.firmware = lib.optional (
        nvidia.datacenter.enable
        && (nvidia.open == true || nvidia.gsp.enable or false)
        && nvidia.package ? firmware
      ) nvidia.package.firmware;

      # nouveau would claim the GPU before the NVIDIA driver (the nixpkgs
      # module blacklists it too; this keeps it so if that ever changes).
      boot.blacklistedKernelModules = [ "nouveau" ];

      # Skipped, not failed, on hosts without NVSwitches.
      systemd.services.nvidia-fabricmanager = lib.mkIf nvidia.datacenter.enable {
        serviceConfig.ExecCondition = "${nvswitchPresent}";
      };
    }

    # The driver is unfree: allow exactly its packages, and only where this
    # configuration creates its own nixpkgs instance (with nixpkgs.pkgs set
    # from outside, as in VM tests, that instance must allow them instead).
    # Not mkDefault: nixpkgs.config is one option whose definitions are
    # merged key by key. A configuration with its own allowUnfreePredicate
    # may override this one; it must then cover these names too (or set
    # allowUnfree = true).
    # mkIf, not optionalAttrs: whether nixpkgs.pkgs is defined depends on
    # every module's definitions, this one's included (infinite recursion).
    (lib.mkIf (!options.nixpkgs.pkgs.isDefined) {
      nixpkgs.config.allowUnfreePredicate = pkg: builtins.elem (lib.getName pkg) unfreeDriverNames;
    })

    # The agent loads NVML from /run/opengl-driver/lib and may open
    # /dev/nvidia*: modules/services.nix declares the switch.
    (lib.optionalAttrs (options ? services.xnode.hardware.nvidia.enable) {
      services.xnode.hardware.nvidia.enable = lib.mkDefault true;
    })

    # nixpkgs' facter module would pick the X11 driver when the report shows
    # the nvidia kernel module in use, which conflicts with the data-center one.
    (lib.optionalAttrs (options ? hardware.facter.detected.graphics.nvidia.enable) {
      hardware.facter.detected.graphics.nvidia.enable = lib.mkDefault false;
    })
  ];
}
