"""tunnelops: expose rootless Podman services at home through a VPS over WireGuard."""

import sys

if sys.dont_write_bytecode:  # PYTHONDONTWRITEBYTECODE: our bytecode cached elsewhere
    from tunnelops import bytecode as _bytecode

    _bytecode.install(__path__[0])

from tunnelops import profile as _profile  # through the loader just installed

_profile.mark("interpreter")  # the interpreter is up, our first import starts (benchmark)
