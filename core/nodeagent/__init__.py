"""The node agent: what the kubelet does on a node (registration and heartbeat so far)."""
