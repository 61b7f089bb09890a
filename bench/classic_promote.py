#!/usr/bin/env python3
"""The classic promotion step, as the classic container does it: a fresh clone, a checkout,
load and re-dump the values file with a YAML library, commit, push. Used by the benchmark only."""
import argparse, os, subprocess, tempfile, shutil
import yaml

p = argparse.ArgumentParser()
p.add_argument("--git-repo", required=True)
p.add_argument("--auth-header", required=True)
p.add_argument("--source-commit", required=True)
p.add_argument("--source-phase", required=True)
p.add_argument("--target-phase", required=True)
p.add_argument("--path", required=True)
p.add_argument("--key", default="image.version")
a = p.parse_args()

def git(*args, cwd=None):
    subprocess.run(["git", "-c", "http.extraHeader=" + a.auth_header, *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

work = tempfile.mkdtemp()
try:
    git("clone", "-q", a.git_repo, work)
    git("checkout", "-q", a.source_commit, cwd=work)
    with open(os.path.join(work, a.path.replace("{phase}", a.source_phase))) as f:
        source = yaml.safe_load(f)
    keys = a.key.split(".")
    version = source
    for k in keys:
        version = version[k]
    git("checkout", "-q", "main", cwd=work)
    target_path = os.path.join(work, a.path.replace("{phase}", a.target_phase))
    with open(target_path) as f:
        target = yaml.safe_load(f)
    node = target
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = version
    with open(target_path, "w") as f:
        yaml.safe_dump(target, f)
    git("-c", "user.name=classic", "-c", "user.email=classic@example.com", "commit", "-qam",
        f"Promote {a.key} {version} from {a.source_phase} to {a.target_phase}", cwd=work)
    git("push", "-q", "origin", "main", cwd=work)
finally:
    shutil.rmtree(work)
