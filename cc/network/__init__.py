"""The cluster controller's network primitives: iptables NAT chains, the cluster LAN's DHCP server, address aliases
and address/port pools. Each module applies a desired state it is given and reads none from the database."""
