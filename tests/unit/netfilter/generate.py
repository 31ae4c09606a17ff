"""Record nft's JSON of each ruleset of rulesets.py (needs a network namespace: root or
user namespaces):

    .venv/bin/python -m tests.unit.netfilter.generate

writes json/NAME.json: {"text": the ruleset, "nft": `nft -j list ruleset` after loading it}.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from tests.unit.netfilter.rulesets import RULESETS

HERE = Path(__file__).parent / "json"


def nft_json(text: str) -> list:
    with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
        f.write(text)
        f.flush()
        res = subprocess.run(["unshare", "-rn", "sh", "-c",
                              f"nft -f {f.name} && nft -j list ruleset"],
                             capture_output=True, text=True, check=False)
    if res.returncode:
        raise SystemExit(f"nft cannot load it: {res.stderr}")
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def main() -> None:
    HERE.mkdir(exist_ok=True)
    for name, text in RULESETS.items():
        (HERE / f"{name}.json").write_text(json.dumps({"text": text, "nft": nft_json(text)},
                                                      indent=1) + "\n")
        print(f"wrote {name}")


if __name__ == "__main__":
    main()
