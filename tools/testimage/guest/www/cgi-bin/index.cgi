#!/bin/sh
# The test VM's page (busybox httpd runs this for "/", as there is no index.html): what it is, its host name, its
# address and the files on its disk (/data).
. /usr/lib/educloud/cgi.sh

ip=$(cat /run/guest-ip 2>/dev/null) || ip="none yet"
if data_mounted; then disk="the boot disk, mounted read-write"; else disk="not mounted: no disk labelled $BOOT_LABEL"; fi

printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
cat <<PAGE
<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>eduCloud test VM</title></head>
<body>
<h1>eduCloud test VM</h1>
<p>hostname: <b id="hostname">$(html "$(hostname)")</b></p>
<p>address: <b id="ip">$(html "$ip")</b></p>
<p>/data: $(html "$disk")</p>
<h2>Files in /data</h2>
<ul id="files">
PAGE
for path in "$DATA"/*; do
  [ -f "$path" ] || continue
  printf '<li>%s (%s bytes)</li>\n' "$(html "${path#"$DATA"/}")" "$(wc -c < "$path")"
done
cat <<PAGE
</ul>
<p>Write a file: /cgi-bin/write?name=NAME&amp;text=TEXT &middot; read it: /cgi-bin/read?name=NAME</p>
</body></html>
PAGE
