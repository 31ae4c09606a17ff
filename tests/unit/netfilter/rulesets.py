"""The rulesets the netfilter reader is tested on, as nft text: tunnelops's own renderings
and hand-written ones with what other tools write (another table's earlier drop, named sets
in two tables, rules this reader does not understand, jumps). generate.py loads each into
nft and records nft's own JSON of it beside it."""

from __future__ import annotations

from dataclasses import replace

from tests.unit.facts.shapes import GAME
from tunnelops.model.ports import PortSpec
from tunnelops.model.tunnel import Tunnel
from tunnelops.render import nftables, nfthost

T = Tunnel()
RANGE = replace(GAME, ports=(PortSpec.parse("27015-27020/udp"),))

OTHER_DROP = """table ip filter {
 chain FORWARD {
  type filter hook forward priority -10; policy accept;
  udp dport { 27014, 27016-27017 } counter packets 0 bytes 0 drop
 }
}
"""

NAMED_SETS = """table inet a {
\tset ports {
\t\ttype inet_service
\t\tflags interval
\t\telements = { 80 comment "web, {tls}", 443,
\t\t\t     27015-27020 comment "game" }
\t}
\tset nets {
\t\ttype ipv4_addr
\t\tflags interval
\t\telements = { 10.0.0.0/8 }
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy drop;
\t\tip saddr @nets tcp dport @ports accept
\t\tudp dport @ports accept comment "x"
\t}
}
"""

TABLE_B = """table inet b {
\tset ports {
\t\ttype inet_service
\t}
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\ttcp dport != @ports drop
\t}
}
"""

NOT_UNDERSTOOD = """table inet t {
  chain input {
    type filter hook input priority filter; policy drop;
    meta mark 0x1 accept
    iifname "eth*" jump from_wan
  }
  chain from_wan {
    tcp dport 22 ct state new accept
    return
  }
}
"""

# a VPS's rules: its own table (the filter its sites share: render.nfthost), then the site's
HOST = nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "home")])
# ... and a second site beside it (wg1, port 51822): the host table's elements only
TWO = nfthost.host_ruleset("eth0", 22, [nfthost.HubSite("wg0", 51821, "home"),
                                        nfthost.HubSite("wg1", 51822, "friend")])

RULESETS = {
    "vps": HOST + nftables.vps_ruleset("eth0", T, (GAME,)),
    "vps-two-sites": TWO + nftables.vps_ruleset("eth0", T, (GAME,)),
    "vps-snat": HOST + nftables.vps_ruleset("eth0", T, (GAME,), snat=True),
    "vps-range": HOST + nftables.vps_ruleset("eth0", T, (RANGE,)),
    "vps-range-other-drop": HOST + nftables.vps_ruleset("eth0", T, (RANGE,)) + OTHER_DROP,
    "home": nftables.home_ruleset(T, (GAME,)),
    "named-sets": NAMED_SETS + TABLE_B,
    "named-sets-a": NAMED_SETS + TABLE_B.replace("\t\ttcp dport != @ports drop\n", ""),
    "not-understood": NOT_UNDERSTOOD,
}
