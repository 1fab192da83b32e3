# Shared by the test VM's scripts (sourced): messages for a person and markers for the host.

BOOT_LABEL=EDUCLOUD
DATA=/data

# say TEXT: a message on the console (the serial port).
say() {
  printf 'educloud-test: %s\n' "$*" > /dev/console
}

# tell MARKER...: a line the host parses in the serial log (alone on its line), also shown on the VGA console.
tell() {
  printf '\n%s\n' "$*" > /dev/ttyS0
  printf '\n%s\n' "$*" > /dev/tty1
}

# data_mounted: true when the boot disk is mounted at /data (else /data is a directory in memory).
data_mounted() {
  grep -q " $DATA vfat " /proc/mounts
}
