"""Node controller: runs VMs through a hypervisor driver and reports on them."""
