"""Starts two Pythons with PYTHONPATH changed as programs do for their children: dropped (venv
runs ensurepip so) and replaced by a folder with a sitecustomize of its own (pip's build
environments do so): both are traced, and the folder's sitecustomize still runs."""
import os
import subprocess
import sys
import tempfile

CODE = ("import builtins; x = bytearray({} * 1024 * 1024); "
        "print(getattr(builtins, 'SITE_RAN', 'no site'), flush=True)")

env = dict(os.environ)
env.pop("PYTHONPATH", None)
subprocess.run([sys.executable, "-c", CODE.format(3)], env=env, check=True)
with tempfile.TemporaryDirectory() as site:
    with open(os.path.join(site, "sitecustomize.py"), "w") as f:
        f.write("import builtins\nbuiltins.SITE_RAN = 'its own site ran'\n")
    env["PYTHONPATH"] = site
    subprocess.run([sys.executable, "-c", CODE.format(5)], env=env, check=True)
