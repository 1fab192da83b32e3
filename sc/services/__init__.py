"""The storage controller's services: volumes, their iSCSI export, snapshots (and the WebDAV shares)."""
