# QEMU/KVM guest (libvirt, Proxmox, OpenStack, `nix run .#vm`): virtio
# devices, the guest agent, and the console on the first serial port.
#
# virtualisation.tpm (a software TPM) belongs to the VM runner of the
# tests and of `nix run .#vm`, not to this profile: a guest on a real
# hypervisor gets its vTPM from the host. It combines with
# generic-x86_64.nix (a KVM guest booted by UEFI) or stands alone.
{ lib, modulesPath, ... }:
{
  # nixpkgs' profile: virtio net/pci/mmio/blk/scsi and 9p in the initrd;
  # balloon, console, rng and gpu loaded at boot.
  imports = [ (modulesPath + "/profiles/qemu-guest.nix") ];

  # Also the emulated controllers QEMU offers besides virtio (q35 AHCI,
  # CD-ROM, USB), for guests defined with those. A plain list: lists merge.
  boot.initrd.availableKernelModules = [
    "ahci"
    "sr_mod"
    "xhci_pci"
  ];

  # The serial console is what `virsh console`, `nix run .#vm` and most
  # clouds show; tty0 keeps the graphical console working too.
  boot.kernelParams = [
    "console=tty0"
    "console=ttyS0,115200n8"
  ];

  # Clean shutdown, time sync after resume and filesystem freeze for
  # snapshots; starts only when the hypervisor provides the channel.
  services.qemuGuest.enable = lib.mkDefault true;
}
