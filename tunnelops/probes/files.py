"""Files on the host: managed files (with their mode and owner, private keys redacted on the
host), tunnelops's own records, and which of some paths exist.

Private keys never leave the host: wherever a file embeds one, the host replaces it by the
placeholder before sending the file (or by a mismatch marker if it is not the host's key).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from tunnelops.model.tunnel import PRIVATE_KEY_PLACEHOLDER
from tunnelops.probes.base import Probe, cat, not_key, q

FOREIGN_KEY = "@TUNNELOPS_OTHER_PRIVATE_KEY@"


@dataclass
class FileFact:
    path: str
    mode: str  # octal, e.g. "600"
    owner: str
    content: str


def redacting_cat(path: str, keyfile: str) -> str:
    """Shell that prints PATH with its private key replaced by a placeholder, on any line the
    tools accept (wg's keys are case-insensitive, whitespace around them ignored), and the
    host's own key replaced wherever else it appears (a comment, a copy). Only shell builtins
    see the key (read, case, printf): it is never on a command line."""
    p, k = q(path), q(keyfile)
    sp = "[![:space:]]"
    return (
        f"k=; [ -r {k} ] && read -r k < {k}; "
        "while IFS= read -r l || [ -n \"$l\" ]; do "
        f"t=${{l#\"${{l%%{sp}*}}\"}}; case $t in "
        "[Pp][Rr][Ii][Vv][Aa][Tt][Ee][Kk][Ee][Yy]*) "
        f"v=${{t#*=}}; v=${{v#\"${{v%%{sp}*}}\"}}; v=${{v%\"${{v##*{sp}}}\"}}; "
        "if [ -n \"$k\" ] && [ \"$v\" = \"$k\" ]; then "
        f"printf '%s\\n' 'PrivateKey = {PRIVATE_KEY_PLACEHOLDER}'; "
        f"else printf '%s\\n' 'PrivateKey = {FOREIGN_KEY}'; fi;; "
        "*) if [ -n \"$k\" ]; then case $l in *\"$k\"*) "
        f"l=\"${{l%%\"$k\"*}}{PRIVATE_KEY_PLACEHOLDER}${{l#*\"$k\"}}\";; esac; fi; "
        f"printf '%s\\n' \"$l\";; esac; done < {p}"
    )


@dataclass(frozen=True)
class File(Probe["FileFact | None"]):
    """A file's mode, owner and content (base64 on the wire); with `key_file`, the private
    key that file holds is redacted on the host. None: no such file."""

    path: str
    key_file: str | None = not_key(None)
    kind = "file"

    def shell(self) -> str:
        # base64 reads the file itself and its lines stay (the parser skips newlines): two
        # programs a file, not four (each one ~50 ms on an emulated host)
        p = q(self.path)
        body = (f"( {redacting_cat(self.path, self.key_file)} ) | base64" if self.key_file
                else f"base64 {p}")
        return f"[ -f {p} ] || exit 0; stat -c '%a %U' {p}; {body}"

    def parse(self, text: str) -> FileFact | None:
        head, _, body = text.partition("\n")
        if not head.strip():
            return None
        mode, _, owner = head.strip().partition(" ")
        try:
            content = base64.b64decode(body.strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            content = ""
        return FileFact(self.path, mode, owner, content)


@dataclass(frozen=True)
class Text(Probe[str]):
    """A small text file of tunnelops's own (a record); "" when there is none."""

    path: str
    kind = "text"

    def shell(self) -> str:
        return f"[ -e {q(self.path)} ] && {cat(q(self.path))}"  # no program at all

    def parse(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class NonEmpty(Probe[bool]):
    """Whether a file exists and is not empty (a private key: never read)."""

    path: str
    kind = "nonempty"

    def shell(self) -> str:
        return f"[ -s {q(self.path)} ] && echo yes"

    def parse(self, text: str) -> bool:
        return text.strip() == "yes"


@dataclass(frozen=True)
class Exists(Probe[list[str]]):
    """Which of these paths exist."""

    paths: tuple[str, ...]
    kind = "exists"

    @property
    def key(self) -> str:
        return " ".join([self.kind, *self.paths])

    def shell(self) -> str:
        return (f"for f in {' '.join(q(p) for p in self.paths)}; do [ -e \"$f\" ] && "
                "printf '%s\\n' \"$f\"; done")

    def parse(self, text: str) -> list[str]:
        return [x for x in text.splitlines() if x.strip()]


@dataclass(frozen=True)
class Tree(Probe[list[str]]):
    """The files under a directory, relative to it (`./etc/nftables.conf`)."""

    path: str
    kind = "tree"

    def shell(self) -> str:
        return f"[ -d {q(self.path)} ] && cd {q(self.path)} && find . -type f"

    def parse(self, text: str) -> list[str]:
        return [x for x in text.splitlines() if x.strip()]


@dataclass(frozen=True)
class Records(Probe[dict[str, str]]):
    """Every `*.json` file of a directory with its text (the site records of a host:
    tunnelops.steps.sites), by path."""

    path: str
    kind = "records"

    def shell(self) -> str:
        return (f"for f in {q(self.path)}/*.json; do [ -f \"$f\" ] && "
                "{ printf '@@ %s\\n' \"$f\"; " + cat('"$f"') + "; echo; }; done")

    def parse(self, text: str) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        cur = None
        for line in text.splitlines():
            if line.startswith("@@ "):
                cur = line[3:]
                out[cur] = []
            elif cur is not None:
                out[cur].append(line)
        return {k: "\n".join(v).strip() for k, v in out.items()}
