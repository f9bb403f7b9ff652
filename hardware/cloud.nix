# Generic cloud VM (EC2, GCE, Azure, OpenStack, Hetzner, DigitalOcean, ...),
# installed with nixos-anywhere and the disko layouts: boots from BIOS or
# UEFI, grows its root to the disk, DHCP on every interface, console on
# the serial port, and no hardware firmware.
#
# Use it instead of generic-x86_64.nix (that one boots with systemd-boot,
# UEFI only), together with a disko layout (hardware/disko/), which
# defines the root filesystem this grows. Settings are lib.mkDefault;
# lists merge, so they are plain.
{ lib, options, ... }:
{
  config = lib.mkMerge [
    {
      # GRUB installs both ways, as providers boot either: into the BIOS boot
      # partition of the disko layout (disko sets boot.loader.grub.devices to
      # the disk that has it) and to the ESP's removable-media path, which
      # UEFI firmware boots without an NVRAM entry.
      boot.loader.grub.enable = lib.mkDefault true;
      boot.loader.grub.efiSupport = lib.mkDefault true;
      boot.loader.grub.efiInstallAsRemovable = lib.mkDefault true;
      # Required by efiInstallAsRemovable (and an instance's NVRAM is not ours).
      boot.loader.efi.canTouchEfiVariables = lib.mkDefault false;

      # Disks are often enlarged after the instance was created, and images
      # are smaller than the disk they are written to: grow the root
      # partition (initrd) and then its filesystem on every boot.
      boot.growPartition = lib.mkDefault true;
      fileSystems."/".autoResize = lib.mkDefault true;

      # Disk drivers of the common hypervisors, for the initrd: KVM (virtio),
      # EC2 Nitro (NVMe), Xen (older EC2), Hyper-V (Azure).
      boot.initrd.availableKernelModules = [
        "virtio_pci"
        "virtio_blk"
        "virtio_scsi"
        "nvme"
        "xen_blkfront"
        "hv_vmbus"
        "hv_storvsc"
        "sd_mod"
        "ata_piix"
      ];

      # The provider's console log and serial console read ttyS0.
      boot.kernelParams = [
        "console=tty1"
        "console=ttyS0,115200n8"
      ];

      # Addresses, routes and DNS come from the provider's DHCP.
      networking.useDHCP = lib.mkDefault true;

      # No hardware to load blobs for: keeps linux-firmware (~1 GiB
      # unpacked) out of the closure.
      hardware.enableRedistributableFirmware = lib.mkDefault false;
    }

    # Owner keys and bootstrap peers may come as user data from the metadata
    # service (EC2 and OpenStack both serve /latest/user-data).
    (lib.optionalAttrs (options ? services.xnode.firstboot.userData) {
      services.xnode.firstboot.userData = lib.mkDefault true;
    })
  ];
}
