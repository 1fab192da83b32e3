"""Services over the cloud's records that every host may need."""
