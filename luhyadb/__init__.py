"""The cloud's records: servers, hosts, images, instances, tasks, owner-groups and VM types."""
