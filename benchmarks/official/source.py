"""Where the official repositories are, and their files written out for import by a torch process.

A repository is given as a path to a git directory (a bare mirror or a clone's .git) or to a checkout. Paths
come from the caller (flags) or from the environment, never from a default of this project:
  I2I_OFFICIAL_REPOS  a directory holding the three repositories, each as `<owner>+<name>/repo` (a mirror) or
                      `<name>` (a clone): NVlabs+MUNIT/repo or MUNIT, mingyuliutw+UNIT/repo or UNIT,
                      znxlwm+UGATIT-pytorch/repo or UGATIT-pytorch.
Get them with `git clone` of NVlabs/MUNIT, mingyuliutw/UNIT and znxlwm/UGATIT-pytorch from GitHub.
Only the standard library is used (so that both the project's venv and the torch venv can import this).
"""

from __future__ import annotations

import os
import subprocess

ENV_REPOS = "I2I_OFFICIAL_REPOS"

# family -> (owner, name, git revision, files, destination subdir)
SOURCES = {
    "munit": ("NVlabs", "MUNIT", "HEAD", ["networks.py", "trainer.py", "utils.py", "data.py", "test.py",
                                          "configs/edges2shoes_folder.yaml"], "munit"),
    "unit": ("mingyuliutw", "UNIT", "version_02",
             ["src/trainers/cocogan_nets.py", "src/trainers/common_net.py", "src/trainers/init.py",
              "src/trainers/cocogan_trainer.py", "src/trainers/helpers.py", "src/tools/net_config.py",
              "src/datasets/dataset_image.py", "src/cocogan_translate_one_image.py", "exps/unit/cat2tiger.yaml"],
             "unit"),
    "ugatit": ("znxlwm", "UGATIT-pytorch", "HEAD", ["networks.py", "UGATIT.py", "utils.py", "dataset.py"], "ugatit"),
}
# Family -> packages of its official tree that get an empty __init__.py (UNIT: its own ones import the Python 2
# trainers too).
EMPTY_PACKAGES = {"unit": ("trainers", "tools")}


def find_repo(family: str, repo: str | None = None) -> str:
  """The official repository of `family`: `repo` if given, else looked up under $I2I_OFFICIAL_REPOS.

  Raises FileNotFoundError saying where to get it.
  """
  owner, name = SOURCES[family][:2]
  candidates = [repo] if repo else []
  root = os.environ.get(ENV_REPOS)
  if not repo and root:
    candidates += [os.path.join(root, f"{owner}+{name}", "repo"), os.path.join(root, name),
                   os.path.join(root, f"{owner}+{name}")]
  for path in candidates:
    if path and os.path.isdir(path):
      return path
  raise FileNotFoundError(
      f"The official {name} repository was not found (looked at {', '.join(candidates) or 'nothing'}). Clone "
      f"{owner}/{name} from GitHub and pass its path, or set {ENV_REPOS} to the directory holding it.")


def _show(repo: str, rev: str, path: str) -> bytes:
  """The bytes of `path` at `rev` in a git repository, or of the file in a checkout without git."""
  shown = subprocess.run(["git", "-C", repo, "show", f"{rev}:{path}"], capture_output=True)
  if shown.returncode == 0:
    return shown.stdout
  direct = os.path.join(repo, path)
  if os.path.isfile(direct):
    with open(direct, "rb") as f:
      return f.read()
  raise FileNotFoundError(f"git show {rev}:{path} in {repo} failed: {shown.stderr.decode()[:200]}")


def export_reference(family: str, dest: str, repo: str | None = None) -> str:
  """Writes the official files of `family` under dest/<subdir> (UNIT's src/ prefix dropped); returns that dir.

  The files are read with `git show` (a mirror has no work tree), so nothing of the official code is kept in
  this project. Raises FileNotFoundError when the repository or a file is missing.
  """
  owner, name, rev, files, sub = SOURCES[family]
  del owner, name
  git_dir = find_repo(family, repo)
  for path in files:
    out = os.path.join(dest, sub, path.replace("src/", "", 1))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
      f.write(_show(git_dir, rev, path))
  for package in EMPTY_PACKAGES.get(family, ()):
    open(os.path.join(dest, sub, package, "__init__.py"), "w").close()
  return os.path.join(dest, sub)
