#!/bin/bash
# build-test-guest.sh OUT.qcow2
#
# Builds Hangar's test guest: a BIOS-bootable qcow2 (MBR + FAT32 + syslinux, like a tiny cloud image)
# from Debian packages only. No mounting, no loop devices (so it works unprivileged-ish, in containers, in CI).
#   - kernel: Debian's stock kernel from the linux-image .deb (apt-get download + dpkg-deb -x)
#   - initramfs: busybox-static; /init prints HANGAR-GUEST-BOOTED, reads the NoCloud seed (LABEL=cidata)
#     and prints "instance-id: <id>", runs acpid so the ACPI power button (virsh shutdown) powers off,
#     then prints "HANGAR-HEARTBEAT <n>" every second forever, so save/restore can be observed.
#     The disk's own FAT32 partition (LABEL=HANGARBOOT) is mounted read-write at /mnt/disk and the guest prints
#     "HANGAR-DISK-MARKER: <first line of /mnt/disk/hangar-marker.txt>" (or "none"), so a change written to the
#     disk shows after a snapshot, a build or an upgrade. A NoCloud user-data starting with "#!/bin/sh" is run
#     as a recipe after HANGAR-GUEST-READY (output on the console, between HANGAR-RECIPE-START and
#     "HANGAR-RECIPE-EXIT <rc>"); a recipe ending in `sync; umount /mnt/disk; poweroff -f` powers the guest off.
#
# The result is cached: when OUT exists and OUT.stamp holds this script's sha256, nothing is rebuilt.
# Needs: apt-get update done once (apt-get download), busybox-static cpio syslinux syslinux-common mtools
# dosfstools qemu-utils.
set -euo pipefail

OUT=${1:?usage: build-test-guest.sh OUT.qcow2}
OUT=$(realpath -m "$OUT")
SELF=$(realpath "$0")
STAMP=$(sha256sum "$SELF" | cut -d' ' -f1)
if [ -f "$OUT" ] && [ "$(cat "$OUT.stamp" 2>/dev/null)" = "$STAMP" ]; then
  echo "test guest up to date: $OUT" >&2
  exit 0
fi

OUTDIR=$(dirname "$OUT")
# The kernel .deb is kept beside the output so a rebuild (script edited) does not download it again.
DEBCACHE=$OUTDIR/.debs
mkdir -p "$OUTDIR" "$DEBCACHE"
W=$(mktemp -d "$OUTDIR/.build.XXXXXX")
trap 'rm -rf "$W"' EXIT

# 1. kernel package (the version linux-image-amd64 currently depends on)
KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || { echo "cannot resolve linux-image-amd64 (has apt-get update run?)" >&2; exit 1; }
if ! ls "$DEBCACHE/${KPKG}"_*.deb >/dev/null 2>&1; then
  (cd "$DEBCACHE" && apt-get download -q -o APT::Sandbox::User=root "$KPKG")
fi
KDEB=$(ls "$DEBCACHE/${KPKG}"_*.deb | head -n1)
mkdir "$W/kx"
dpkg-deb -x "$KDEB" "$W/kx"
KVER=$(ls "$W/kx/lib/modules/")
MD=$W/kx/lib/modules/$KVER
busybox depmod -b "$W/kx" "$KVER"

# 2. module closure: virtio disks, seed filesystems (iso9660 on a disk or a CD-ROM, or vfat), ACPI button
WANT="virtio_pci virtio_blk virtio_scsi sd_mod sr_mod ata_piix ahci ata_generic isofs vfat nls_cp437 nls_ascii nls_utf8 nls_iso8859-1 button evdev"
declare -A SEEN
LIST=()
add() {
  local rel=$1 deps d
  [ -n "${SEEN[$rel]:-}" ] && return
  SEEN[$rel]=1
  LIST+=("$rel")
  deps=$(grep -m1 "^$rel:" "$MD/modules.dep" | cut -d: -f2)
  for d in $deps; do add "$d"; done
}
for m in $WANT; do
  rel=$(grep -E "/${m}\.ko(\.[a-z]+)?:" "$MD/modules.dep" | cut -d: -f1 | head -n1)
  if [ -z "$rel" ]; then
    # built into this kernel: nothing to copy
    grep -qE "/${m}\.ko$" "$MD/modules.builtin" && continue
    echo "kernel module $m not found" >&2
    exit 1
  fi
  add "$rel"
done

# 3. initramfs tree
R=$W/root
mkdir -p "$R"/{bin,dev,proc,sys,mnt/seed,mnt/disk,etc/acpi/PWRF,lib/modules/$KVER,tmp}
cp /bin/busybox "$R/bin/busybox"
for rel in "${LIST[@]}"; do
  mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
  cp "$MD/$rel" "$R/lib/modules/$KVER/$rel"
done
cp "$MD/modules.builtin" "$MD/modules.order" "$R/lib/modules/$KVER/"
busybox depmod -b "$R" "$KVER"
echo "$WANT" >"$R/etc/modules"

cat >"$R/etc/acpi/PWRF/00000080" <<'ACPI'
#!/bin/sh
echo "HANGAR-ACPI-POWER-BUTTON: powering off" > /dev/console
sync
# The disk is mounted read-write: unmount it so a graceful shutdown leaves the FAT clean (dirty bit off).
umount /mnt/disk 2>/dev/null
poweroff -f
ACPI
chmod +x "$R/etc/acpi/PWRF/00000080"

cat >"$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in $(cat /etc/modules); do modprobe "$m" 2>/dev/null; done
echo "HANGAR-GUEST-BOOTED kernel=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime)"
# NoCloud seed: a filesystem labelled cidata (ISO9660 or vfat) on a CD-ROM or a disk. Devices can show up
# late, so retry for ~5 s; fall back to probing every block device if findfs cannot read the label.
SEED=""
i=0
while [ $i -lt 50 ]; do
  SEED=$(findfs LABEL=cidata 2>/dev/null || findfs LABEL=CIDATA 2>/dev/null) && break
  SEED=""
  for d in /dev/sr0 /dev/sr1 /dev/vd? /dev/sd?; do
    [ -b "$d" ] || continue
    mount -o ro "$d" /mnt/seed 2>/dev/null || continue
    if [ -f /mnt/seed/meta-data ]; then umount /mnt/seed; SEED=$d; break; fi
    umount /mnt/seed
  done
  [ -n "$SEED" ] && break
  i=$((i+1)); sleep 0.1
done
if [ -n "$SEED" ] && mount -o ro "$SEED" /mnt/seed; then
  IID=$(sed -n 's/^instance-id: *//p' /mnt/seed/meta-data | tr -d '"\r')
  HN=$(sed -n 's/^local-hostname: *//p' /mnt/seed/meta-data | tr -d '"\r')
  echo "HANGAR-SEED device=$SEED"
  echo "instance-id: $IID"
  [ -n "$HN" ] && hostname "$HN" && echo "local-hostname: $HN"
  echo "user-data-first-line: $(head -n1 /mnt/seed/user-data 2>/dev/null)"
  # Kept in memory: the seed is unmounted before the recipe runs (a recipe must not depend on it).
  [ -f /mnt/seed/user-data ] && cp /mnt/seed/user-data /tmp/user-data
  umount /mnt/seed
else
  echo "HANGAR-SEED-NOT-FOUND"
fi
# ACPI power button -> poweroff, so a graceful `virsh shutdown` works
# The guest's own disk: the FAT32 partition the bootloader reads (label HANGARBOOT; vda1 if findfs cannot
# tell), read-write so a recipe can leave a file behind that a snapshot or a build then carries.
DISK=$(findfs LABEL=HANGARBOOT 2>/dev/null) || DISK=/dev/vda1
if [ -b "$DISK" ] && mount -t vfat -o rw "$DISK" /mnt/disk; then
  if [ -f /mnt/disk/hangar-marker.txt ]; then
    echo "HANGAR-DISK-MARKER: $(head -n1 /mnt/disk/hangar-marker.txt | tr -d '\r')"
  else
    echo "HANGAR-DISK-MARKER: none"
  fi
else
  echo "HANGAR-DISK-NOT-MOUNTED device=$DISK"
  echo "HANGAR-DISK-MARKER: none"
fi
acpid -c /etc/acpi -l /dev/console 2>/dev/null || acpid -c /etc/acpi
echo "HANGAR-GUEST-READY uptime=$(cut -d' ' -f1 /proc/uptime)"
# A recipe (user-data that is a shell script) runs after READY, so a boot check sees the guest up before the
# recipe can power it off. Other user-data (cloud-config) is ignored, as before.
if [ -f /tmp/user-data ] && [ "$(head -c 9 /tmp/user-data)" = '#!/bin/sh' ]; then
  echo "HANGAR-RECIPE-START"
  sh /tmp/user-data </dev/null >/dev/console 2>&1
  echo "HANGAR-RECIPE-EXIT $?"
fi
# A counter kept in memory: after a managed save + restore it carries on, after a reboot it restarts at 1.
n=0
while true; do sleep 1; n=$((n+1)); echo "HANGAR-HEARTBEAT $n"; done
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) >"$W/initrd.img"
cp "$W/kx/boot/vmlinuz-$KVER" "$W/vmlinuz"
rm -rf "$W/kx"

# 4. BIOS-bootable disk: MBR (syslinux mbr.bin) + one FAT32 partition made with mkfs.fat --offset,
#    syslinux installed through its mtools backend, files copied with mcopy. No mount, no loop device.
IMG=$W/disk.raw
SIZE_MB=64
START=2048
truncate -s ${SIZE_MB}M "$IMG"
SECTORS=$((SIZE_MB * 2048 - START))
# One MBR partition entry written by hand (no fdisk needed): active, type 0x0c (FAT32 LBA), CHS fields
# set to the "use LBA" marker, LBA start and length little-endian; then the 0x55AA boot signature.
le32() { printf '\\%03o\\%03o\\%03o\\%03o' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
printf "\\200\\376\\377\\377\\014\\376\\377\\377$(le32 $START)$(le32 $SECTORS)" |
  dd of="$IMG" bs=1 seek=446 conv=notrunc status=none
printf '\125\252' | dd of="$IMG" bs=1 seek=510 conv=notrunc status=none
mkfs.fat -F 32 -n HANGARBOOT --offset=$START "$IMG" $((SECTORS / 2)) >/dev/null
OFF=$((START * 512))
syslinux --offset $OFF --install "$IMG"
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$IMG" bs=440 count=1 conv=notrunc status=none
cat >"$W/syslinux.cfg" <<'CFG'
DEFAULT linux
PROMPT 0
TIMEOUT 0
SERIAL 0 115200
LABEL linux
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND console=ttyS0,115200 panic=-1 quiet
CFG
mcopy -o -i "$IMG@@$OFF" "$W/vmlinuz" "$W/initrd.img" "$W/syslinux.cfg" ::/
qemu-img convert -q -f raw -O qcow2 "$IMG" "$W/guest.qcow2"
chmod 0644 "$W/guest.qcow2"
mv -f "$W/guest.qcow2" "$OUT"
echo "$STAMP" >"$OUT.stamp"
echo "built test guest: $OUT ($(stat -c %s "$OUT") bytes, kernel $KVER)" >&2
