"""The gwcli tree: one module per level (root, cluster, disks, targets, gateways, hosts, groups)."""
