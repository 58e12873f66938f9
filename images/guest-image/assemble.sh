#!/bin/sh
# Assemble the dockyard guest disk, unprivileged (no loop device, no mount):
#   1. Debian's kernel package, downloaded and unpacked (never installed);
#   2. an initramfs: busybox-static, dropbear and its libraries, the few kernel
#      modules the kernel lacks (with modules.dep for busybox modprobe), our /init;
#   3. a FAT "superfloppy" (no partition table) made in a file, filled with
#      mtools and made bootable with `syslinux --install` on the file;
#   4. converted to qcow2, with a manifest.
# Every timestamp is SOURCE_DATE_EPOCH (default: the kernel's own build time),
# the cpio is sorted, the FAT volume id fixed: two builds give the same disk.
#
# usage: assemble.sh SRC OUT   (SRC: this image's build context, OUT: /guest)
set -eu

SRC=$1
OUT=$2
KERNEL_PACKAGE=${GUEST_KERNEL_PACKAGE:-linux-image-amd64}
MODULES=${GUEST_MODULES:-"evdev button virtio-rng virtio_net"}
CMDLINE=${GUEST_CMDLINE:-"console=tty0 console=ttyS0"}
DISK=dockyard-guest.qcow2

W=$(mktemp -d /tmp/guest.XXXXXX)
ROOT=$W/root
mkdir -p "$W/deb" "$ROOT" "$OUT"
chmod 0755 "$W"

# -- 1. the kernel ------------------------------------------------------------
apt-get update -qq
pkg=$(apt-cache depends --important "$KERNEL_PACKAGE" | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ {print $2; exit}')
pkg=${pkg:-$KERNEL_PACKAGE}
chown _apt "$W/deb"
(cd "$W/deb" && apt-get download -qq "$pkg")
dpkg-deb -x "$W"/deb/*.deb "$W/kernel"
KVER=$(ls "$W/kernel/usr/lib/modules")
KVERSION=$(dpkg-deb -f "$W"/deb/*.deb Version)
VMLINUZ=$W/kernel/boot/vmlinuz-$KVER
: "${SOURCE_DATE_EPOCH:=$(stat -c %Y "$VMLINUZ")}"
export SOURCE_DATE_EPOCH
rm -rf /var/lib/apt/lists/*

# -- 2. the initramfs ---------------------------------------------------------
cd "$ROOT"
mkdir -p bin sbin usr/bin usr/sbin lib/x86_64-linux-gnu lib64 etc/dropbear \
         dev proc sys run tmp var/log mnt root/.ssh
chmod 0700 root root/.ssh etc/dropbear
chmod 1777 tmp

# busybox and every applet as a symlink to it
cp /usr/bin/busybox bin/busybox
for applet in $(bin/busybox --list-full); do
    [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done

# dropbear (server, client, key tool) and the libraries they link
cp /usr/sbin/dropbear usr/sbin/
cp /usr/bin/dbclient /usr/bin/dropbearkey usr/bin/
ln -s dbclient usr/bin/ssh
for lib in $(ldd /usr/sbin/dropbear /usr/bin/dbclient /usr/bin/dropbearkey | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do
    cp -L "$lib" "lib/x86_64-linux-gnu/${lib##*/}"
done
cp -L /lib64/ld-linux-x86-64.so.2 lib64/

# kernel modules: the wanted ones and their dependencies, uncompressed
depmod -b "$W/kernel/usr" "$KVER"
MDIR=lib/modules/$KVER
mkdir -p "$MDIR"
: > etc/modules
for m in $MODULES; do
    deps=$(modprobe -d "$W/kernel/usr" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}')
    [ -n "$deps" ] || continue        # built into the kernel
    for ko in $deps; do
        rel=${ko#*/lib/modules/$KVER/}
        dest=$MDIR/${rel%.xz}
        [ -e "$dest" ] && continue
        mkdir -p "${dest%/*}"
        case $ko in
            *.xz) xz -dc "$ko" > "$dest" ;;
            *) cp "$ko" "$dest" ;;
        esac
    done
    echo "$m" >> etc/modules
done
cp "$W/kernel/usr/lib/modules/$KVER/modules.builtin" "$W/kernel/usr/lib/modules/$KVER/modules.order" \
   "$W/kernel/usr/lib/modules/$KVER/modules.builtin.modinfo" "$MDIR/"
depmod -b "$ROOT" "$KVER"
rm -f "$MDIR"/*.bin

# our own files
install -m 0755 "$SRC/init" init
install -m 0755 "$SRC/udhcpc.script" etc/udhcpc.script
echo dockyard-guest > etc/hostname
printf 'root:x:0:0:root:/root:/bin/sh\n' > etc/passwd
printf 'root:*:1:0:99999:7:::\n' > etc/shadow
chmod 0600 etc/shadow
printf 'root:x:0:\ntty:x:5:\n' > etc/group
printf '/bin/sh\n/bin/ash\n' > etc/shells
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n' > etc/nsswitch.conf
printf '127.0.0.1 localhost\n::1 localhost\n' > etc/hosts
: > etc/resolv.conf

find . -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
find . -print0 | LC_ALL=C sort -z \
    | cpio --null --create --format=newc --reproducible --owner=0:0 --quiet \
    | zstd -q -19 -T1 > "$W/initrd.img"
cd /

# -- 3. the FAT disk ----------------------------------------------------------
cat > "$W/syslinux.cfg" <<EOF
SERIAL 0 115200
DEFAULT guest
PROMPT 0
TIMEOUT 0
LABEL guest
  KERNEL /vmlinuz
  INITRD /initrd.img
  APPEND $CMDLINE
EOF
cp "$VMLINUZ" "$W/vmlinuz"
touch -d "@$SOURCE_DATE_EPOCH" "$W/vmlinuz" "$W/initrd.img" "$W/syslinux.cfg"
# room for the files, SYSLINUX (about 150 KiB) and FAT, rounded up to a MiB
used=$(du -c -k "$W/vmlinuz" "$W/initrd.img" | awk 'END {print $1}')
kib=$(( (used + 2048 + 1023) / 1024 * 1024 ))
rm -f "$W/disk.raw"
mkfs.fat --invariant -i 444b5944 -n DOCKYARD -C "$W/disk.raw" "$kib" >/dev/null
export MTOOLS_SKIP_CHECK=1
mcopy -m -i "$W/disk.raw" "$W/vmlinuz" "$W/initrd.img" "$W/syslinux.cfg" ::/
syslinux --install "$W/disk.raw"

# -- 4. qcow2 and the manifest ------------------------------------------------
qemu-img convert -f raw -O qcow2 "$W/disk.raw" "$OUT/$DISK"
touch -d "@$SOURCE_DATE_EPOCH" "$OUT/$DISK"
python3 - "$OUT" "$DISK" "$KVER" "$pkg" "$KVERSION" "$CMDLINE" "$kib" <<'EOF'
import hashlib, json, os, subprocess, sys
out, disk, kver, pkg, kversion, cmdline, kib = sys.argv[1:]
path = os.path.join(out, disk)
digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
def version(name):
    return subprocess.run(["dpkg-query", "-W", "-f=${Version}", name], capture_output=True, text=True).stdout
manifest = {
    "file": disk,
    "format": "qcow2",
    "size": os.path.getsize(path),
    "virtual_size": int(kib) * 1024,
    "sha256": digest,
    "kernel": kver,
    "cmdline": cmdline,
    "packages": {pkg: kversion, "busybox-static": version("busybox-static"),
                 "dropbear-bin": version("dropbear-bin"), "syslinux": version("syslinux")},
    "source_date_epoch": int(os.environ["SOURCE_DATE_EPOCH"]),
    "console_lines": ["dockyard-guest: dhcp eth0 ", "dockyard-guest: metadata hostname ",
                      "dockyard-guest: metadata keys ", "dockyard-guest: sshd up"],
}
with open(os.path.join(out, "guest.json"), "w") as fh:
    json.dump(manifest, fh, indent=2, sort_keys=True)
    fh.write("\n")
EOF
touch -d "@$SOURCE_DATE_EPOCH" "$OUT/guest.json"
rm -rf "$W"
cat "$OUT/guest.json"
