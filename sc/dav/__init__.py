"""The storage controller's WebDAV shares (wsgidav) under ``/sc/dav/``: a home folder per account and a share per
owner-group, logged in with the cloud's accounts (the CLC checks each login) and ruled by the owner-group rule
(docs/storage.md, "WebDAV shares")."""
