"""The door to ``breeze-connect``: importing the SDK through Velox reaches nothing off the
machine, leaves no top-level ``config`` module or SDK folder on ``sys.path`` (a project's own
``config`` module still imports), writes no ``./logs``, and puts the IPv6 switch back; the
SDK's request functions get a timeout. Checked in a child process whose non-loopback
connects and name lookups fail it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.engine.conftest import ROOT

CHILD = """
import socket, sys
real = socket.socket.connect
def guard(self, address):
    if not str(address[0]).startswith("127."):
        raise SystemExit(f"reached out to {address}")
    return real(self, address)
socket.socket.connect = guard
real_lookup = socket.getaddrinfo
def lookup(host, *args, **kwargs):
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"looked up {host}")
    return real_lookup(host, *args, **kwargs)
socket.getaddrinfo = lookup
import requests
ipv6 = requests.packages.urllib3.util.connection.HAS_IPV6
path = list(sys.path)
sys.path.insert(0, ".")
open("config.py", "w").write("WHO = 'the project'\\n")
import config  # the project's own module, imported before the SDK
from velox.brokers.breeze import _sdk
modules = _sdk.sdk()
assert sys.modules["config"].WHO == "the project", "the SDK's config replaced the project's"
assert modules.config.__name__ == "breeze_connect.config" and modules.config.API_URL
assert sys.path[1:] == path, "the SDK folder stayed on sys.path"
assert requests.packages.urllib3.util.connection.HAS_IPV6 == ipv6
assert modules.connect.zip is None  # the import-time security master was never fetched
api = modules.connect.BreezeConnect(api_key="k")
with _sdk.pointed_at(_sdk.BreezeUrls("http://127.0.0.1:9")) as cfg:
    assert cfg.API_URL == "http://127.0.0.1:9/breezeapi/api/v1/"
assert modules.config.API_URL == "https://api.icicidirect.com/breezeapi/api/v1/"
import time
t0 = time.monotonic()
with _sdk.timeout(0.5):
    try:
        modules.connect.requests.get("http://127.0.0.1:9/x")
    except requests.RequestException:
        pass
print("clean", round(time.monotonic() - t0, 1))
"""


def test_importing_the_sdk_stays_on_the_machine_and_keeps_the_process_clean(
    tmp_path: Path,
) -> None:
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0 and "clean" in done.stdout, done.stdout + done.stderr
    names = sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__")
    assert names == ["config.py"]  # no ./logs folder, no log files
