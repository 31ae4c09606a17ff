"""NetworkManager properties the home's WireGuard connection needs after import.

`nmcli connection import type wireguard file wg0.conf` creates the profile (address,
private key, peer); these are the seed's hand edits of wg0.nmconnection, applied with
`nmcli connection modify wg0 PROP VALUE ...` and read back with
`nmcli -g PROP,... connection show wg0`.

Values are in the form `nmcli -g` prints, checked against NetworkManager's sources
(src/libnmc-setting/nm-meta-setting-desc.c, libnm-core nm-setting-ip-config.c):
- NMTernary properties (wireguard.ip4-auto-default-route) print as a number in -g/terse
  mode: -1 default, 0 false, 1 true (pretty mode adds the name: "0 (false)"). Setting
  accepts the same numbers as well as yes/no/true/false/on/off/default.
- booleans print yes/no; uint32 properties plain decimal; wireguard.mtu prints "auto" for 0.
- ipv4.routing-rules is a list joined with ", "; each rule prints canonically as
  "priority N [from A[/L]] [to B[/L]] table T", dropping the prefix length when it is the
  full /32 and omitting "from" when only "to" is set.
- terse output backslash-escapes ':' (and '\\'), which normalise() undoes.
"""

from __future__ import annotations

from tunnelops.model.tunnel import Tunnel

TERNARY = {"-1": "-1", "0": "0", "1": "1", "default": "-1", "unknown": "-1", "no": "0",
           "false": "0", "off": "0", "yes": "1", "true": "1", "on": "1"}
BOOLEAN = {"yes": "yes", "true": "yes", "on": "yes", "1": "yes",
           "no": "no", "false": "no", "off": "no", "0": "no"}
TERNARY_PROPS = frozenset({"wireguard.ip4-auto-default-route",
                           "wireguard.ip6-auto-default-route"})
BOOLEAN_PROPS = frozenset({"wireguard.peer-routes", "ipv4.never-default"})


def routing_rules(t: Tunnel) -> str:
    first, second = t.rule_priorities
    return (f"priority {first} from {t.home_address} table {t.route_table}, "
            f"priority {second} to {t.vps_address} table {t.route_table}")


def home_settings(t: Tunnel) -> dict[str, str]:
    """Desired property -> value, in `nmcli -g` readback form (also accepted by modify)."""
    return {
        "ipv4.method": "manual",
        "ipv4.addresses": f"{t.home_address}/{t.prefixlen}",
        # Routes of this connection (the peer's 0.0.0.0/0 included) go to our table only.
        "ipv4.route-table": str(t.route_table),
        "ipv4.routing-rules": routing_rules(t),
        # With a /0 peer NM would otherwise install its own fwmark rules and default route.
        "wireguard.ip4-auto-default-route": "0",
        "wireguard.peer-routes": "yes",
        "wireguard.mtu": "auto" if t.mtu is None else str(t.mtu),
    }


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in ":\\":
            i += 1
        out.append(value[i])
        i += 1
    return "".join(out)


def _rule(rule: str) -> str:
    words = rule.split()
    # "from 192.168.2.2/32" and "from 192.168.2.2" are the same rule; NM prints the latter.
    for i, word in enumerate(words):
        if i and words[i - 1] in ("from", "to") and word.endswith("/32"):
            words[i] = word[:-3]
    return " ".join(words)


def normalise(prop: str, value: str) -> str:
    """Map any way nmcli may print or accept a value to the form home_settings() uses."""
    value = _unescape(value.strip())
    if prop in TERNARY_PROPS:
        return TERNARY.get(value.split(" ", 1)[0].lower(), value)
    if prop in BOOLEAN_PROPS:
        return BOOLEAN.get(value.lower(), value)
    if prop == "ipv4.routing-rules":
        return ", ".join(_rule(r) for r in value.split(",") if r.strip())
    if prop == "wireguard.mtu" and value == "0":
        return "auto"
    return value


def modify_args(current: dict[str, str], desired: dict[str, str]) -> list[str]:
    """[prop, value, ...] for `nmcli connection modify CONN`, only where they differ."""
    args: list[str] = []
    for prop, value in desired.items():
        have = current.get(prop)
        if have is None or normalise(prop, have) != normalise(prop, value):
            args += [prop, value]
    return args
