"""A separate process working on a RADOS config store, driven by the concurrency tests.

    python config_worker.py CONF KEYRING POOL OBJECT MODE [ARGS...]

Modes (each prints one JSON object per line on stdout):

* ``clients TARGET PREFIX COUNT GO_FILE`` - say ready, wait for GO_FILE, then add COUNT clients
  to TARGET, one update each; print ``{"done": ..., "conflicts": ...}``.
* ``rounds``  - per line on stdin: ``read`` -> load, print the version read;
  ``commit`` -> commit "+1 on cmdsn_depth of both targets" on that base, print whether it
  won or lost; a loser then retries with ``update`` and prints the version it got.
* ``reader STOP_FILE`` - say ready, then until STOP_FILE exists, load repeatedly (2 keys
  per page) and check that both targets always carry the same cmdsn_depth; print counts.
* ``churn`` - commit changes forever (each touches several keys), printing each version;
  the test kills it with SIGKILL at random moments.  Keeps a watch open, like a gateway.
* ``watch`` - print ``{"version": V, "seen": time}`` for every notify.
"""

from __future__ import annotations

import json
import os
import sys
import time

from gateway.config import operations as ops
from gateway.config.errors import ConflictError
from gateway.config.rados_store import RadosConfigStore

T1 = "iqn.2003-01.com.example:t1"
T2 = "iqn.2003-01.com.example:t2"


def say(**kw) -> None:
    print(json.dumps(kw), flush=True)


def depth(cfg, target: str) -> int:
    return cfg.targets[target].controls.get("cmdsn_depth", 128)


def increment(cfg) -> int:
    """One change writing two keys: both targets' cmdsn_depth = T1's + 1 (wrapping in 1..500)."""
    value = depth(cfg, T1) % 500 + 1
    ops.set_target_controls(cfg, T1, {"cmdsn_depth": value})
    ops.set_target_controls(cfg, T2, {"cmdsn_depth": value})
    return value


def clients(store: RadosConfigStore, target: str, prefix: str, count: str, go_file: str) -> None:
    store.load()
    say(ready=True)
    while not os.path.exists(go_file):
        time.sleep(0.001)
    conflicts = 0
    versions = []
    for n in range(int(count)):
        done = store.update(lambda cfg, n=n: ops.add_client(cfg, target, f"{prefix}:{n}"))
        conflicts += done.conflicts
        versions.append(done.version)
    say(done=int(count), conflicts=conflicts, versions=versions)


def rounds(store: RadosConfigStore) -> None:
    base = None
    for line in sys.stdin:
        command = line.strip()
        if command == "read":
            base = store.load()
            say(read=base.version)
        elif command == "commit":
            mine = base.copy()
            increment(mine)
            try:
                done = store.commit(base, mine)
                say(won=done.version)
            except ConflictError:
                retried = store.update(increment)
                say(lost=base.version, retried=retried.version, value=retried.result)
        elif command == "quit":
            return


def reader(store: RadosConfigStore, stop_file: str) -> None:
    reads = torn = 0
    versions = set()
    store.load()
    say(ready=True)
    while not os.path.exists(stop_file):
        cfg = store.load()
        reads += 1
        versions.add(cfg.version)
        if depth(cfg, T1) != depth(cfg, T2):
            torn += 1
    say(reads=reads, torn=torn, versions=len(versions))


def churn(store: RadosConfigStore) -> None:
    store.watch(lambda version: None)
    say(ready=True)
    n = 0
    while True:
        n += 1
        name = f"iqn.1994-05.com.example:churn{n % 5}"

        def step(cfg, name=name):
            if name in cfg.targets[T1].clients:
                ops.remove_client(cfg, T1, name)
            else:
                ops.add_client(cfg, T1, name)
            increment(cfg)

        say(version=store.update(step).version)


def watch(store: RadosConfigStore) -> None:
    store.watch(lambda version: say(version=version, seen=time.time()))
    say(ready=True)
    sys.stdin.read()  # until the test closes stdin


def main() -> None:
    conf, keyring, pool, obj, mode, *args = sys.argv[1:]
    page_size = 2 if mode == "reader" else 512
    store = RadosConfigStore.connect(conffile=conf, keyring=keyring, pool=pool, object_name=obj,
                                     page_size=page_size)
    try:
        {"clients": clients, "rounds": rounds, "reader": reader, "churn": churn, "watch": watch}[mode](
            store, *args)
    finally:
        store.close()


if __name__ == "__main__":
    main()
