"""pytest for the Python side's pure helpers (run by `npm test`, through scripts/py.sh): the
package under python/ is imported as the bridge imports it."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
