"""tunnelops tasks: `inv --list` is the manual. Thin: parse, call tunnelops, print."""

from invoke import Collection

from tunnelops.lab.tasks import ns as lab

ns = Collection(lab)
