"""tunnelops: expose rootless Podman services at home through a VPS over WireGuard."""
