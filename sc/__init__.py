"""Storage controller: volumes for instances and WebDAV shares."""
