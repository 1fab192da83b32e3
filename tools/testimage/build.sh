#!/usr/bin/env bash
# Builds the test VM image var/testimage/educloud-test.qcow2 (and its sidecar educloud-test.json) from Debian's
# kernel and busybox-static packages: a FAT disk that boots by BIOS through syslinux into a busybox initramfs.
# Does nothing but print the image's path when the image on disk was built from the same inputs (this folder's
# files and the package versions). Needs root, for apt-get (see README.md beside this file).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../deploy/lib.sh"

HERE="$EDUCLOUD_ROOT/tools/testimage"
OUT="$EDUCLOUD_ROOT/var/testimage"
CACHE="$OUT/debs"
IMAGE="$OUT/educloud-test.qcow2"
META="$OUT/educloud-test.json"
DISK_MIB=64
LABEL=EDUCLOUD
# Drivers for the disks, NICs, power button and panic device (pvpanic) QEMU offers, and the file systems of /data;
# their dependencies come from the kernel's own modules.dep.
MODULES=(ata_piix ahci sd_mod virtio_pci virtio_blk e1000 virtio_net vfat nls_cp437 nls_ascii nls_iso8859_1
  nls_utf8 button evdev pvpanic_mmio)
VERSION_PATTERN='^[A-Za-z0-9.+~:-]+$'
PACKAGE_PATTERN='^[a-z0-9][a-z0-9.+-]+$'

die() {
  echo "build.sh: $*" >&2
  exit 1
}

# kernel_package: the versioned kernel package behind the linux-image-amd64 metapackage.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# candidates PKG...: "PKG VERSION" for each PKG that apt would fetch, from the package lists this machine has.
candidates() {
  apt-cache policy "$@" 2>/dev/null \
    | awk '/^[^ ]/ { sub(/:$/, "", $1); pkg = $1 } $1 == "Candidate:" && $2 != "(none)" { print pkg, $2 }'
}

# resolve: set KERNEL_PKG, KERNEL_VERSION and BUSYBOX_VERSION from the package lists; fails if one is unknown.
resolve() {
  local pkg version
  KERNEL_PKG="$(kernel_package)"
  KERNEL_VERSION=""
  BUSYBOX_VERSION=""
  [ -n "$KERNEL_PKG" ] || return 1
  [[ "$KERNEL_PKG" =~ $PACKAGE_PATTERN ]] || die "unexpected kernel package name: $KERNEL_PKG"
  while read -r pkg version; do
    case "$pkg" in
      "$KERNEL_PKG") KERNEL_VERSION="$version" ;;
      busybox-static) BUSYBOX_VERSION="$version" ;;
    esac
  done < <(candidates "$KERNEL_PKG" busybox-static)
  [ -n "$KERNEL_VERSION" ] && [ -n "$BUSYBOX_VERSION" ]
}

refresh_package_lists() {
  say "updating the package lists"
  as_root apt-get update -qq
  APT_UPDATED=1
}

# inputs_hash: what the image is made from (the build files of this folder and the two packages' versions).
inputs_hash() {
  {
    (cd "$HERE" && find build.sh syslinux.cfg guest -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    printf '%s\n' "$KERNEL_PKG=$KERNEL_VERSION" "busybox-static=$BUSYBOX_VERSION" "disk=$DISK_MIB MiB"
  } | sha256sum | cut -d' ' -f1
}

# json_field NAME: a string field of the sidecar written by this script (one field a line).
json_field() {
  sed -n "s/^  \"$1\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p" "$META" 2>/dev/null
}

# up_to_date HASH: the image and sidecar exist, were built from HASH, and the image is unchanged since.
up_to_date() {
  [ -f "$IMAGE" ] && [ -f "$META" ] && [ "$(json_field inputs)" = "$1" ] \
    && [ "$(sha256sum "$IMAGE" | cut -d' ' -f1)" = "$(json_field sha256)" ]
}

# fetch PKG VERSION: the path of the .deb in the cache, downloaded (and checked by apt) if it is not there.
fetch() {
  local pkg="$1" version="$2" deb
  deb="$CACHE/${pkg}_${version//:/%3a}_amd64.deb"
  if [ ! -f "$deb" ]; then
    local incoming
    incoming="$(mktemp -d "$CACHE/incoming.XXXXXX")"
    # As root, apt would drop to its _apt user, which cannot write into this root-owned folder.
    (cd "$incoming" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$version" >&2) || {
      rm -rf "$incoming"
      return 1
    }
    find "$CACHE" -maxdepth 1 -name "${pkg}_*.deb" -delete
    mv "$incoming"/*.deb "$deb"
    rmdir "$incoming"
  fi
  printf '%s\n' "$deb"
}

# add_modules ROOT KERNEL_TREE KVER: copy MODULES and their dependencies into ROOT/lib/modules, uncompressed (busybox
# insmod reads plain .ko files), and list them in load order (dependencies first) in ROOT/lib/modules/load-order.
add_modules() {
  local root="$1" tree="$2" kver="$3" module deps line path file
  local -A listed=()
  depmod -b "$tree" "$kver"
  mkdir -p "$root/lib/modules"
  : > "$root/lib/modules/load-order"
  for module in "${MODULES[@]}"; do
    # -C /dev/null: none of this machine's own modprobe settings apply to the guest.
    deps="$(modprobe -C /dev/null -d "$tree" -S "$kver" --show-depends "$module")"
    [ -n "$deps" ] || die "kernel $kver has no module $module"
    while read -r line; do
      case "$line" in
        builtin\ *) continue ;;
        insmod\ *) path="${line#insmod }"; path="${path% }" ;;
        *) die "unexpected modprobe output for $module: $line" ;;
      esac
      file="$(basename "$path")"
      file="${file%.xz}"; file="${file%.zst}"; file="${file%.gz}"
      [ -z "${listed[$file]:-}" ] || continue
      listed[$file]=1
      case "$path" in
        *.ko.xz) xz -dc "$path" > "$root/lib/modules/$file" ;;
        *.ko.zst) zstd -qdc "$path" > "$root/lib/modules/$file" ;;
        *.ko.gz) gzip -dc "$path" > "$root/lib/modules/$file" ;;
        *.ko) cp "$path" "$root/lib/modules/$file" ;;
        *) die "unexpected module file $path" ;;
      esac
      printf '%s\n' "$file" >> "$root/lib/modules/load-order"
    done <<< "$deps"
  done
}

# add_busybox ROOT BUSYBOX_TREE: the static busybox and a link for each of its applets.
add_busybox() {
  local root="$1" tree="$2" applet
  install -D -m 0755 "$tree/bin/busybox" "$root/bin/busybox"
  while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$root/$(dirname "$applet")"
    ln -sf /bin/busybox "$root/$applet"
  done < <("$root/bin/busybox" --list-full)
}

# add_guest_files ROOT: this folder's guest/ tree, with the modes the guest needs whatever the checkout kept.
add_guest_files() {
  local root="$1"
  cp -R "$HERE/guest/." "$root/"
  find "$root/etc" "$root/usr/lib/educloud" "$root/www" -type f -exec chmod 0644 {} +
  chmod 0755 "$root/init" "$root/bin/autologin" "$root/etc/udhcpc.script" "$root"/etc/init.d/* \
    "$root/etc/acpi/PWRF/00000080" "$root"/www/cgi-bin/*
  mkdir -p "$root"/{dev,proc,sys,run,tmp,data,root,var/log}
  ln -sfn /run "$root/var/run"
}

build() {
  local work="$1" kernel_deb="$2" busybox_deb="$3" kver root raw
  say "unpacking $KERNEL_PKG $KERNEL_VERSION and busybox-static $BUSYBOX_VERSION"
  dpkg-deb -x "$kernel_deb" "$work/kernel"
  dpkg-deb -x "$busybox_deb" "$work/busybox"
  kver="$(basename "$(find "$work/kernel/lib/modules" -mindepth 1 -maxdepth 1 -type d)")"
  [ -f "$work/kernel/boot/vmlinuz-$kver" ] || die "no vmlinuz-$kver in $KERNEL_PKG"
  KVER="$kver"

  say "making the initramfs"
  root="$work/root"
  mkdir -p "$root"
  add_busybox "$root" "$work/busybox"
  add_modules "$root" "$work/kernel" "$kver"
  add_guest_files "$root"
  (cd "$root" && find . -print0 | LC_ALL=C sort -z | cpio --null -o -H newc -R 0:0 --quiet) | zstd -q -19 \
    > "$work/initrd.img"

  say "making the $DISK_MIB MiB boot disk"
  raw="$work/disk.raw"
  mkfs.fat -C -n "$LABEL" "$raw" $((DISK_MIB * 1024)) > /dev/null
  syslinux --install "$raw"
  mcopy -i "$raw" "$work/kernel/boot/vmlinuz-$kver" ::/vmlinuz
  mcopy -i "$raw" "$work/initrd.img" ::/initrd.img
  mcopy -i "$raw" "$HERE/syslinux.cfg" ::/syslinux.cfg
  qemu-img convert -c -f raw -O qcow2 "$raw" "$work/educloud-test.qcow2"
}

# write_sidecar FILE IMAGE HASH: the image's description, one field a line.
write_sidecar() {
  local file="$1" image="$2" hash="$3" value
  for value in "$KERNEL_PKG" "$KERNEL_VERSION" "$BUSYBOX_VERSION" "$KVER"; do
    [[ "$value" =~ $VERSION_PATTERN ]] || die "unexpected version or name: $value"
  done
  cat > "$file" <<JSON
{
  "file": "$(basename "$IMAGE")",
  "format": "qcow2",
  "size": $(stat -c %s "$image"),
  "virtual_size": $((DISK_MIB * 1024 * 1024)),
  "sha256": "$(sha256sum "$image" | cut -d' ' -f1)",
  "kernel_version": "$KVER",
  "kernel_package": "$KERNEL_PKG",
  "kernel_package_version": "$KERNEL_VERSION",
  "busybox_package_version": "$BUSYBOX_VERSION",
  "inputs": "$hash"
}
JSON
}

main() {
  # Only the image's path goes to standard output (image="$(tools/testimage/build.sh)"); messages go to stderr.
  exec 3>&1 1>&2
  mkdir -p "$OUT" "$CACHE"
  # One build at a time (tests running side by side share the output); what a killed build left is removed.
  exec 9> "$OUT/.lock"
  flock 9
  rm -rf "$OUT"/build.* "$CACHE"/incoming.*
  ensure_packages syslinux syslinux-common mtools dosfstools qemu-utils cpio kmod zstd xz-utils

  resolve || { refresh_package_lists && resolve; } \
    || die "apt knows no linux-image-amd64 or busybox-static: check /etc/apt/sources.list"
  local hash
  hash="$(inputs_hash)"
  if up_to_date "$hash"; then
    echo "$IMAGE" >&3
    return 0
  fi

  local kernel_deb busybox_deb
  if ! kernel_deb="$(fetch "$KERNEL_PKG" "$KERNEL_VERSION")" || ! busybox_deb="$(fetch busybox-static "$BUSYBOX_VERSION")"
  then
    # The lists named versions the archive no longer has: take the current ones.
    refresh_package_lists
    resolve || die "apt knows no linux-image-amd64 or busybox-static after an update"
    hash="$(inputs_hash)"
    kernel_deb="$(fetch "$KERNEL_PKG" "$KERNEL_VERSION")" || die "could not download $KERNEL_PKG $KERNEL_VERSION"
    busybox_deb="$(fetch busybox-static "$BUSYBOX_VERSION")" || die "could not download busybox-static"
  fi

  WORK="$(mktemp -d "$OUT/build.XXXXXX")"
  trap 'rm -rf "$WORK"' EXIT
  build "$WORK" "$kernel_deb" "$busybox_deb"
  write_sidecar "$WORK/educloud-test.json" "$WORK/educloud-test.qcow2" "$hash"
  mv -f "$WORK/educloud-test.qcow2" "$IMAGE"
  mv -f "$WORK/educloud-test.json" "$META"
  say "built $(basename "$IMAGE"): kernel $KVER, $(stat -c %s "$IMAGE") bytes"
  echo "$IMAGE" >&3
}

main "$@"
