"""Run the portal standalone with RAM disks or RBD images (for testing and benchmarks).

    python -m gateway.portal --listen 127.0.0.1:3260 --ramdisk 64M
    python -m gateway.portal --listen 127.0.0.1:3260 --ramdisk 64M --ramdisk 1G \\
        --acl iqn.1994-05.com.redhat:client --chap user1234:password1234
    python -m gateway.portal --listen 127.0.0.1:3260 --rbd rbd/disk1 --ceph-conf /etc/ceph/ceph.conf

LUNs are numbered in order: the RAM disks first, then the RBD images, then the read-only
RBD images.  Two gateways of one target are two processes with their own TPG tags on the
same images, e.g. ``--tpg 1 --alua-tpgs 1,2`` and ``--tpg 2 --alua-tpgs 1,2``: implicit ALUA
with the owner's group (``--owner-tpg``, default the lowest tag) Active/Optimized; the owner
takes the RBD exclusive lock at start, the other gateway asks for it on its first write.

The daemon (rbd-target-gw) configures the same registry from the cluster config instead.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from gateway.iscsi.chap import ChapCredentials, ChapSecret
from gateway.portal.registry import ClientAcl, PortalSpec, Target, TargetControls, TargetRegistry, Tpg
from gateway.portal.server import PortalServer
from tcmu_handler.api import LunTable
from tcmu_handler.factory import memory_disk, parse_size

DEFAULT_IQN = "iqn.2003-01.org.ceph.iscsi-gw:ramdisk"


def _secret(text: str | None) -> ChapSecret | None:
    if not text:
        return None
    user, sep, password = text.partition(":")
    if not sep:
        raise SystemExit(f"expected USER:PASSWORD, got {text!r}")
    return ChapSecret(user, password)


def _tags(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def alua_model(args: argparse.Namespace):
    """The implicit ALUA model of ``--alua-tpgs`` (None: a single gateway, no ALUA)."""
    if not args.alua_tpgs:
        return None
    from tcmu_handler.alua import implicit_model

    return implicit_model(owner_tpg(args), {tag: (tag,) for tag in args.alua_tpgs})


def owner_tpg(args: argparse.Namespace) -> int:
    if args.owner_tpg is not None:
        return args.owner_tpg
    return min(args.alua_tpgs) if args.alua_tpgs else args.tpg


def build_registry(args: argparse.Namespace, rbd_disks: list | None = None) -> TargetRegistry:
    registry = TargetRegistry()
    units = [memory_disk(parse_size(size), block_size=args.block_size, name=f"ramdisk{i}",
                         alua=alua_model(args), instant=True)
             for i, size in enumerate(args.ramdisk or ([] if rbd_disks else ["64M"]))]
    disks = dict(enumerate(units + list(rbd_disks or [])))
    chap = None
    if args.chap:
        chap = ChapCredentials(_secret(args.chap), _secret(args.mutual_chap))
    portals = [PortalSpec(ip, port) for ip, port in map(_endpoint, args.listen)]
    target = Target(iqn=args.target, tpgs={args.tpg: Tpg(args.tpg, portals, enabled=True)},
                    acl_enabled=bool(args.acl), chap=None if args.acl else chap,
                    luns=LunTable(dict(disks)),
                    controls=TargetControls.from_dict(dict(c.split("=", 1) for c in args.control)))
    for iqn in args.acl or []:
        target.clients[iqn] = ClientAcl(iqn, LunTable(dict(disks)), chap)
    registry.set_target(target)
    if args.discovery_chap:
        registry.set_discovery_auth(ChapCredentials(_secret(args.discovery_chap),
                                                    _secret(args.discovery_mutual_chap)))
    return registry


async def open_rbd_disks(args: argparse.Namespace):
    """Open every ``--rbd POOL/IMAGE`` (then ``--read-only-rbd``) as a disk; the owner
    gateway (this one unless ``--owner-tpg`` names another) takes the exclusive lock."""
    specs = [(spec, False) for spec in args.rbd or []] + [(spec, True) for spec in args.read_only_rbd or []]
    if not specs:
        return [], None
    import rados

    from tcmu_handler.config import DiskConfig
    from tcmu_handler.factory import open_rbd_disk
    from tcmu_handler.xcopy import LunRegistry

    cluster = rados.Rados(conffile=args.ceph_conf, name=args.client_name)
    cluster.connect(timeout=10)
    registry = LunRegistry()
    disks = []
    for spec, read_only in specs:
        pool, _, image = spec.partition("/")
        ioctx = cluster.open_ioctx(pool)
        config = DiskConfig(wwn=_wwn_of(ioctx, image), read_only=read_only, block_size=args.block_size,
                            physical_block_size=args.physical_block_size,
                            lock_handoff_timeout=args.lock_handoff_timeout)
        disks.append(await open_rbd_disk(config, pool=pool, image=image, conf=args.ceph_conf,
                                         client_name=args.client_name, alua=alua_model(args),
                                         registry=registry, reservation_ioctx=ioctx,
                                         owner=owner_tpg(args) == args.tpg and not read_only))
    return disks, cluster


def _wwn_of(ioctx, image: str) -> str:
    from gateway.config.image_identity import ensure_image_wwn

    return ensure_image_wwn(ioctx, image)


async def serve(args: argparse.Namespace) -> None:
    rbd_disks, cluster = await open_rbd_disks(args)
    registry = build_registry(args, rbd_disks)
    server = PortalServer(registry, asyncio.get_running_loop())
    bound = [await server.listen(ip, port) for ip, port in map(_endpoint, args.listen)]
    # Port 0 means "any free port": the TPG announces and serves the ports actually bound.
    registry.targets[args.target].tpgs[args.tpg].portals = [PortalSpec(ip, port) for ip, port in bound]
    for ip, port in bound:
        print(f"listening on {ip}:{port} target {args.target}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.close()
    if rbd_disks:
        from tcmu_handler.factory import close_disk

        for disk in rbd_disks:
            await close_disk(disk)
        cluster.shutdown()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gateway.portal", description=__doc__.splitlines()[0])
    p.add_argument("--listen", action="append", default=[], metavar="IP:PORT",
                   help="portal address (repeatable; port 0 = any free port)")
    p.add_argument("--ramdisk", action="append", metavar="SIZE", help="a RAM disk LUN (repeatable)")
    p.add_argument("--rbd", action="append", metavar="POOL/IMAGE", help="an RBD image LUN (repeatable)")
    p.add_argument("--read-only-rbd", action="append", metavar="POOL/IMAGE",
                   help="an RBD image LUN that refuses writes (repeatable)")
    p.add_argument("--ceph-conf", default="/etc/ceph/ceph.conf", help="ceph.conf for --rbd")
    p.add_argument("--client-name", default="client.admin", help="CephX user for --rbd")
    p.add_argument("--block-size", type=int, default=512)
    p.add_argument("--physical-block-size", type=int, metavar="BYTES",
                   help="physical block size reported for RBD LUNs (e.g. 4096 on 512-byte blocks)")
    p.add_argument("--target", default=DEFAULT_IQN, help="target IQN")
    p.add_argument("--tpg", type=int, default=1, metavar="TAG",
                   help="TPG tag of this gateway's portals (also its relative port and ALUA group)")
    p.add_argument("--alua-tpgs", type=_tags, metavar="TAG,TAG...",
                   help="TPG tags of every gateway of the target: implicit ALUA")
    p.add_argument("--owner-tpg", type=int, metavar="TAG",
                   help="the gateway owning the disks (AO, takes the lock); default the lowest tag")
    p.add_argument("--lock-handoff-timeout", type=int, default=2, metavar="SECONDS",
                   help="how long the lock holder has to answer a request for it before it is fenced")
    p.add_argument("--acl", action="append", metavar="IQN", help="allowed initiator (enables ACLs)")
    p.add_argument("--chap", metavar="USER:PASSWORD", help="CHAP the initiator must prove")
    p.add_argument("--mutual-chap", metavar="USER:PASSWORD", help="CHAP the target proves (mutual)")
    p.add_argument("--discovery-chap", metavar="USER:PASSWORD")
    p.add_argument("--discovery-mutual-chap", metavar="USER:PASSWORD")
    p.add_argument("--control", action="append", default=[], metavar="KEY=VALUE",
                   help="target control (cmdsn_depth, immediate_data, ...; repeatable)")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if not args.listen:
        args.listen = ["127.0.0.1:3260"]
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        import uvloop
    except ImportError:
        uvloop = None
    if uvloop is not None:
        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
