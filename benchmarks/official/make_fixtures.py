"""Writes the official code's numbers that the offline equivalence tests compare against (needs torch).

  I2I_OFFICIAL_REPOS=DIR  python -m benchmarks.official.make_fixtures --families=munit,unit,ugatit
  python -m benchmarks.official.make_fixtures --families=munit --munit_repo=PATH/TO/MUNIT --out=DIR --paper

Run it with a Python that has torch (e.g. a venv with `pip install torch==2.13.0 numpy pyyaml`), from the
project's root. It builds each family's official networks with the official code at a small configuration
(seeded), saves their weights in the official checkpoint layout, runs them on fixed inputs and runs one full
official training iteration (the official trainer's discriminator update, then its generator update) with
recorded random draws, and writes per fixture (see benchmarks/official/ref_<family>.py for the contents):
  tests/official/<fixture>_weights.npz   the official state dicts, keys `<file>::<network>::<tensor>`
  tests/official/<fixture>.yaml          the official config (MUNIT, UNIT)
  tests/official/<fixture>_io.npz        inputs, random draws, forward outputs, loss terms, gradients, and the
                                         weights after the optimizer step
With --paper the same is done at each family's paper architecture at 64 px into --out (not the test fixtures;
a few hundred MB), and the script prints the summary that BUILD.md's equivalence table quotes.
The official repositories are found as benchmarks/official/source.py says.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

from benchmarks.official import source  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--families", default="munit,unit,ugatit")
  parser.add_argument("--out", default=os.path.join(ROOT, "tests", "official"))
  parser.add_argument("--paper", action="store_true", help="paper architectures at 64 px (not for the tests)")
  for family in source.SOURCES:
    parser.add_argument(f"--{family}_repo", default=None, help=f"path of the official {family} repository")
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  summary = {}
  with tempfile.TemporaryDirectory() as tmp:
    for family in args.families.split(","):
      src = source.export_reference(family, tmp, getattr(args, f"{family}_repo"))
      sys.path.insert(0, src)
      try:
        module = importlib.import_module(f"benchmarks.official.ref_{family}")
        summary[family] = module.make(src, args.out, paper=args.paper)
      finally:
        sys.path.remove(src)
        for name in [n for n in sys.modules if n in ("networks", "utils", "trainer", "data", "UGATIT", "dataset")
                     or n.startswith(("trainers", "tools"))]:
          del sys.modules[name]  # the families' official modules share names (networks, utils)
  print(json.dumps(summary, indent=2, sort_keys=True))
  return 0


if __name__ == "__main__":
  sys.exit(main())
