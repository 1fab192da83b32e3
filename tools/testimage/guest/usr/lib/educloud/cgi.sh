# Shared by the test VM's CGI programs (sourced): query parameters, file names, answers.

. /usr/lib/educloud/guest.sh

# Files the VM boots from: writing one would break the next boot, so the CGI refuses them.
BOOT_FILES=" ldlinux.sys ldlinux.c32 syslinux.cfg vmlinuz initrd.img "

# param NAME: print the URL-decoded value of NAME from the query string (the first one); fails if it is absent.
param() {
  local pair rest="$QUERY_STRING&"
  while [ -n "$rest" ]; do
    pair=${rest%%&*}
    rest=${rest#*&}
    case "$pair" in
      "$1="*) httpd -d "${pair#*=}"; return 0 ;;
    esac
  done
  return 1
}

# valid_name NAME: 1 to 64 of [A-Za-z0-9._-], not made of dots only (".", ".." and the like).
valid_name() {
  case "$1" in
    "" | *[!A-Za-z0-9._-]*) return 1 ;;
    *[!.]*) [ "${#1}" -le 64 ] ;;
    *) return 1 ;;
  esac
}

# boot_file NAME: true for the files the VM boots from (FAT ignores case, so neither does this).
boot_file() {
  case "$BOOT_FILES" in
    *" $(printf '%s' "$1" | tr 'A-Z' 'a-z') "*) return 0 ;;
  esac
  return 1
}

# answer CODE REASON [TEXT]: the HTTP status and a plain-text body.
answer() {
  printf 'Status: %s %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n' "$1" "$2"
  [ -z "$3" ] || printf '%s\n' "$3"
}

# html TEXT: TEXT with the characters that mean something in HTML escaped.
html() {
  printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g' -e 's/"/\&quot;/g'
}

# valid_serial SERIAL: 1 to 20 of [A-Za-z0-9-] (what a virtio disk's serial holds; volume ids are vol-0123abcd).
valid_serial() {
  case "$1" in
    "" | *[!A-Za-z0-9-]*) return 1 ;;
    *) [ "${#1}" -le 20 ] ;;
  esac
}

# valid_count TEXT MAX: TEXT is a decimal number from 0 to MAX.
valid_count() {
  case "$1" in
    "" | *[!0-9]*) return 1 ;;
    *) [ "${#1}" -le 10 ] && [ "$1" -le "$2" ] ;;
  esac
}

# disk_of SERIAL: print /dev/<disk> of the disk whose serial is SERIAL (/sys/block/*/serial); fails when none is.
disk_of() {
  local file
  for file in /sys/block/*/serial; do
    [ -f "$file" ] && [ "$(cat "$file")" = "$1" ] || continue
    file=${file%/serial}
    printf '/dev/%s\n' "${file##*/}"
    return 0
  done
  return 1
}
