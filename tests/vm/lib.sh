# Build and boot small Debian VMs for tests: a real systemd as PID 1 under
# QEMU (TCG unless KVM really starts a guest), with files of the test's
# choosing copied in. Sourced by the scripts beside it.

# The guest's own kernel and initramfs come from its rootfs: the host never
# installs a kernel package (whose scripts assume a real machine).
VM_PACKAGES=systemd,systemd-sysv,dbus,udev,iproute2,busybox,jq,curl,linux-image-amd64,initramfs-tools,libtss2-esys-3.0.2-0,libtss2-tctildr0,libtss2-tcti-device0,libtss2-tcti-swtpm0,libtss2-mu0,libtss2-rc0

VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

vm_say() { printf '==> %s\n' "$*" >&2; }

# A Debian root filesystem tarball, built once and cached by package list.
vm_rootfs_tar() {
  local cache=$1 key tar
  key=$(printf '%s' "$VM_PACKAGES" | sha256sum | cut -c1-16)
  tar=$cache/rootfs-bookworm-$key.tar
  if [ ! -s "$tar" ]; then
    mkdir -p "$cache"
    vm_say "building the VM root filesystem (mmdebstrap, once)"
    # unshare mode: the build runs in user namespaces and never touches the
    # host's /dev.
    # A mirror that fails a download now and then gets two more tries;
    # only a finished build enters the cache (callers run this in $(...),
    # where errexit does not apply, so failures return explicitly).
    local try
    for try in 1 2 3; do
      rm -rf "$tar.tmp"
      if mmdebstrap --quiet --mode=unshare --format=tar --variant=apt --include="$VM_PACKAGES" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        bookworm "$tar.tmp" >&2; then
        mv "$tar.tmp" "$tar" || return 1
        break
      fi
      rm -rf "$tar.tmp"
      if [ "$try" = 3 ]; then
        vm_say "mmdebstrap failed 3 times: no VM root filesystem"
        return 1
      fi
      vm_say "mmdebstrap failed (try $try of 3); trying again in 10 s"
      sleep 10
    done
  fi
  echo "$tar"
}

# Unpack the cached rootfs into $2 and prepare it to boot on a serial
# console; its kernel and initramfs are copied to $2.vmlinuz and $2.initrd.
vm_unpack() {
  local tar=$1 root=$2
  rm -rf "$root" && mkdir -p "$root"
  tar -C "$root" -xf "$tar"
  echo xnode-vm >"$root/etc/hostname"
  printf '/dev/vda / ext4 rw 0 1\n' >"$root/etc/fstab"
  # No password prompts, no getty fighting the test for the console.
  ln -sf /dev/null "$root/etc/systemd/system/serial-getty@ttyS0.service"
  ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
  cp "$(ls "$root"/boot/vmlinuz-* | sort -V | tail -n1)" "$root.vmlinuz"
  cp "$(ls "$root"/boot/initrd.img-* | sort -V | tail -n1)" "$root.initrd"
}

# Make an ext4 image of directory $1 at $2 (no mount needed).
vm_image() {
  local root=$1 img=$2
  rm -f "$img"
  mke2fs -q -t ext4 -d "$root" "$img" 1536M
}

# Boot image $1 with kernel $2.vmlinuz and initramfs $2.initrd (from
# vm_unpack); serial console to $3. Extra QEMU arguments follow; memory
# and vCPUs come from VM_MEM_MB (1024), VM_SMP (2, QEMU's -smp syntax)
# and VM_CPU (max).
# Returns when the guest powers off or the timeout (VM_TIMEOUT, s) passes.
vm_boot() {
  local img=$1 kernel=$2.vmlinuz initrd=$2.initrd log=$3
  shift 3
  local accel=tcg
  if [ "${VM_KVM:-auto}" != no ] && [ -w /dev/kvm ] && vm_kvm_works "$kernel"; then
    accel=kvm
  fi
  vm_say "booting under $accel (kernel $(basename "$kernel"))"
  timeout "${VM_TIMEOUT:-240}" qemu-system-x86_64 -machine q35,accel="$accel" -cpu "${VM_CPU:-max}" \
    -m "${VM_MEM_MB:-1024}" -smp "${VM_SMP:-2}" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0 quiet" \
    -drive file="$img",if=virtio,format=raw \
    -nic none -display none -no-reboot -serial file:"$log" "$@" >&2
}

# KVM guests hang on some hosts although /dev/kvm exists: try one briefly.
vm_kvm_works() {
  local kernel=$1 out
  out=$(timeout 8 qemu-system-x86_64 -machine q35,accel=kvm -m 256 -kernel "$kernel" \
    -append "console=ttyS0 panic=-1" -display none -no-reboot -serial stdio 2>/dev/null | head -c 4096)
  case "$out" in *"Linux version"*) return 0 ;; *) return 1 ;; esac
}

# Install guest script $2 into root $1 as a oneshot unit that runs once the
# guest is up, with the guest helpers (guest-lib.sh) beside it.
vm_install_test() {
  local root=$1 script=$2
  install -m 0644 "$VM_HERE/guest-lib.sh" "$root/usr/local/lib/xnode-guest-lib.sh"
  install -m 0755 "$script" "$root/usr/local/bin/xnode-vmtest"
  cat >"$root/etc/systemd/system/xnode-vmtest.service" <<UNIT
[Unit]
Description=xnode VM test
After=dbus.service multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/bin/xnode-vmtest
ExecStopPost=/bin/systemctl --no-block poweroff
TimeoutStartSec=infinity
UNIT
  ln -sf /etc/systemd/system/xnode-vmtest.service "$root/etc/systemd/system/multi-user.target.wants/xnode-vmtest.service"
}

# Image root $1 (then remove it), boot it, and print the guest's
# XNODE-VMTEST lines; the work files go under $2.
vm_run_test() {
  local root=$1 work=$2 start
  vm_image "$root" "$work/disk.img"
  rm -rf "$root"
  start=$(date +%s%N)
  vm_boot "$work/disk.img" "$root" "$work/serial.log" || true
  vm_say "guest ran $(( ($(date +%s%N) - start) / 1000000 )) ms"
  grep -a 'XNODE-VMTEST' "$work/serial.log" | tr -d '\r' || { tail -n 40 "$work/serial.log" >&2; return 1; }
}
