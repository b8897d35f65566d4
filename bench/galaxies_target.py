"""Real-data check of ``target_ess``: the galaxies velocities, K=4, as a CLI user runs it.

The 82 galaxy velocities of Roeder (1990) (R's ``MASS::galaxies``, in 1,000 km/s) need
more than the default 1,000 draws per chain at K=4 (bulk ESS ~120, tail ESS ~45 in
issue 16's run). This runs ``bayesgmm fit galaxies.csv -k 4`` twice, as a new user
would -- with exactly the default draws (``--target-ess 0``) and with the CLI's default
target (rounds of draws until min bulk and tail ESS >= 100 per chain and R-hat <= 1.01)
-- and prints each run's verdict and sampling facts.

Run::

    python bench/galaxies_target.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# MASS::galaxies (Roeder 1990's version, with 26960 for Postman et al.'s 26690)
GALAXIES = [
    9172, 9350, 9483, 9558, 9775, 10227, 10406, 16084, 16170, 18419, 18552, 18600, 18927,
    19052, 19070, 19330, 19343, 19349, 19440, 19473, 19529, 19541, 19547, 19663, 19846,
    19856, 19863, 19914, 19918, 19973, 19989, 20166, 20175, 20179, 20196, 20215, 20221,
    20415, 20629, 20795, 20821, 20846, 20875, 20986, 21137, 21492, 21701, 21814, 21921,
    21960, 22185, 22209, 22242, 22249, 22314, 22374, 22495, 22746, 22747, 22888, 22914,
    23206, 23241, 23263, 23484, 23538, 23542, 23666, 23706, 23711, 24129, 24285, 24289,
    24366, 24717, 24990, 25633, 26960, 26995, 32065, 32789, 34279,
]  # fmt: skip


def main() -> None:
    assert len(GALAXIES) == 82
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "galaxies.csv"
        data.write_text("velocity\n" + "\n".join(f"{v / 1000:.3f}" for v in GALAXIES) + "\n")
        for label, extra in (("default draws only", ["--target-ess", "0"]), ("CLI default", [])):
            out = Path(tmp) / label.replace(" ", "_")
            cmd = [sys.executable, "-m", "bayesgmm", "fit", str(data), "-k", "4",
                   "--seed", "1", "--quiet", "--out", str(out), *extra]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            print(f"== {label}: exit {proc.returncode}")
            print("\n".join(proc.stdout.strip().splitlines()[-2:]))
            diag = out / "diagnostics.csv"
            if diag.exists():
                print(diag.read_text())
            facts = out / "report.html"
            if facts.exists():
                text = facts.read_text()
                for key in ("Drawn in", "Chains run", "Posterior modes"):
                    i = text.find(key)
                    if i >= 0:
                        print(text[i : text.find("</li>", i)])
            record = out / ".bayesgmm-report.json"
            if record.exists():
                print("files:", len(json.loads(record.read_text()).get("files", [])))


if __name__ == "__main__":
    main()
