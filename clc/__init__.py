"""Cloud controller: accounts, records, the admin console and the cloud's status."""
