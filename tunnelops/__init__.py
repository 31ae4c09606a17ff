"""tunnelops: expose rootless Podman services at home through a VPS over WireGuard."""

from tunnelops import profile as _profile

_profile.mark("interpreter")  # the interpreter is up, our first import starts (benchmark)
