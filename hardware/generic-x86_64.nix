# Generic x86_64 server (bare metal): UEFI boot with systemd-boot, CPU
# microcode and redistributable firmware, a serial console next to the
# screen, and, when the host has one, its nixos-facter hardware report.
#
# Every setting is lib.mkDefault so that a host configuration (or the
# facter report, which also works at mkDefault) can override it. Lists
# merge instead of overriding, so they are plain: a mkDefault list would
# silently vanish as soon as any other module adds to the same option.
{ config, lib, ... }:
let
  cfg = config.xnode.hardware;
in
{
  options.xnode.hardware.facterReport = lib.mkOption {
    type = lib.types.nullOr lib.types.path;
    default = null;
    example = lib.literalExpression "./facter.json";
    description = ''
      This host's hardware report from nixos-facter, made on the host with
      `sudo nixos-facter -o facter.json` (or by nixos-anywhere's
      `--generate-hardware-config nixos-facter ./facter.json`). NixOS then
      picks the kernel modules, firmware, microcode and guest support the
      hardware needs. It holds no secrets; commit it beside the host.
    '';
  };

  config = {
    # nixpkgs' own facter modules read the report (hardware.facter.*).
    hardware.facter.reportPath = lib.mkDefault cfg.facterReport;

    # NICs, RAID/HBA controllers and GPUs load vendor blobs from linux-firmware.
    hardware.enableRedistributableFirmware = lib.mkDefault true;
    # CPU errata and security fixes; the microcode comes with that firmware set.
    hardware.cpu.intel.updateMicrocode =
      lib.mkDefault config.hardware.enableRedistributableFirmware;
    hardware.cpu.amd.updateMicrocode = lib.mkDefault config.hardware.enableRedistributableFirmware;

    # UEFI with systemd-boot: one ESP at /boot (the disko layouts make it).
    boot.loader.systemd-boot.enable = lib.mkDefault true;
    # Editing the kernel command line at the boot menu is a root shell
    # (init=/bin/sh) for anyone at the console: off on an appliance.
    boot.loader.systemd-boot.editor = lib.mkDefault false;
    # Keep the 1 GiB ESP from filling up with kernels of old generations.
    boot.loader.systemd-boot.configurationLimit = lib.mkDefault 20;
    # bootctl always installs the removable-media path (EFI/BOOT/BOOTX64.EFI),
    # which firmware boots without an NVRAM entry; not writing EFI variables
    # keeps installs from the live USB or a VM image portable between machines.
    boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;

    # Storage and USB controllers the initrd may need to find the root disk
    # when there is no facter report to name them (facter adds its own).
    boot.initrd.availableKernelModules = [
      "nvme"
      "ahci"
      "sd_mod"
      "sr_mod"
      "xhci_pci"
      "ehci_pci"
      "usb_storage"
      "usbhid"
      "uas"
      "megaraid_sas"
      "mpt3sas"
      "aacraid"
    ];

    # Console on the screen and on the first serial port (IPMI/BMC
    # serial-over-LAN); the last console= also gets systemd's output, and
    # NixOS starts a getty on it.
    boot.kernelParams = [
      "console=tty0"
      "console=ttyS0,115200n8"
    ];

    # SSDs and NVMe: weekly TRIM.
    services.fstrim.enable = lib.mkDefault true;
  };
}
