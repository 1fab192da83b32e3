"""Cluster controller: the NCs of one cluster, scheduling, the image cache and the cluster's network."""
