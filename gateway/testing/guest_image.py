"""The Debian guest image of the system tests: a kernel plus a zstd initramfs.

The system tier runs the real Linux initiator (open-iscsi, dm-multipath) in a QEMU
guest.  Its image is built from Debian packages only -- ``debootstrap --variant=minbase``
for the user space, ``apt-get download`` of the current ``linux-image-*-amd64`` for
the kernel -- and cached under ``${XDG_CACHE_HOME:-~/.cache}/ceph-rbd-iscsi-gateway/guest/``
in a directory named by a hash of every build input, so a machine builds it once
(about a minute) and every later run reuses it.  The whole root file system lives in
the initramfs: no disk image, no root privileges beyond what debootstrap needs.

Test logic is not part of the image: ``gateway.testing.guest`` appends ``/init`` and
the shell library as a small uncompressed cpio per run, so changing a test never
rebuilds the image.

Concurrent builders serialise on ``guest/.lock`` (flock); a result directory appears
by an atomic rename only once complete, so readers never see a partial image.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# User space of the guest (besides what minbase brings).
PACKAGES = ("open-iscsi", "multipath-tools", "sg3-utils", "kmod", "iproute2", "udev",
            "util-linux", "procps")
# Kernel modules of the guest; their dependency closure is added, nothing else.
MODULES = (
    "virtio_pci", "virtio_net", "net_failover",     # network (slirp)
    "sd_mod", "sg",                                 # SCSI disks and generic access
    "iscsi_tcp",                                    # the open-iscsi kernel part
    "dm_multipath", "dm_round_robin", "dm_service_time", "dm_queue_length",
    "scsi_dh_alua",                                 # ALUA device handler
    "crc32c_generic", "crc32c_intel",               # iSCSI digests
    "9p", "9pnet_virtio",                           # the host share (signals, files)
    "ext4",                                         # optional file system tests
)
# Trees of the root file system the guest never reads (docs, locales, apt state).
PRUNE = (
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
    "usr/share/i18n", "usr/share/lintian", "usr/share/common-licenses",
    "usr/share/bash-completion", "usr/share/zsh", "usr/lib/udev/hwdb.d", "usr/lib/udev/hwdb.bin",
    "etc/udev/hwdb.bin", "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf",
    "var/log", "usr/share/zoneinfo",
)
# Default /init of the bare image: a boot smoke test; runs replace it with their own.
BARE_INIT = """#!/bin/sh
mount -t proc proc /proc
echo "VMTEST bare guest image booted; no test script"
echo o > /proc/sysrq-trigger
"""

BUILD_TIMEOUT = 900.0
LOCK_TIMEOUT = 1200.0
UNUSED_DAYS = 14


class GuestImageError(RuntimeError):
    """The guest image could not be built or found."""


class _StaleAptLists(GuestImageError):
    """apt's lists name a kernel the archive no longer has (security updates rotate)."""


@dataclass(frozen=True)
class GuestImage:
    """A built, cached guest image: what ``Guest`` boots."""

    directory: Path
    key: str
    kernel_version: str

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.directory / "initramfs.img"

    @property
    def manifest(self) -> dict:
        return json.loads((self.directory / "manifest.json").read_text())


@dataclass(frozen=True)
class BuildInputs:
    """Everything the image depends on; its hash names the cache entry."""

    suite: str
    mirror: str
    kernel_package: str
    kernel_package_version: str
    packages: tuple[str, ...] = PACKAGES
    modules: tuple[str, ...] = MODULES
    builder_digest: str = ""

    def key(self) -> str:
        blob = json.dumps(self.__dict__, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/ceph-rbd-iscsi-gateway/guest`` (override: GUEST_IMAGE_CACHE)."""
    if os.environ.get("GUEST_IMAGE_CACHE"):
        return Path(os.environ["GUEST_IMAGE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ceph-rbd-iscsi-gateway" / "guest"


def _run(cmd: list[str], *, timeout: float = 300.0, cwd: Path | None = None,
         env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise GuestImageError(f"{' '.join(cmd[:3])}... timed out after {timeout:.0f}s") from e
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise GuestImageError(f"{' '.join(cmd[:4])} failed ({proc.returncode}):\n" + "\n".join(tail))
    return proc.stdout


def host_suite() -> str:
    """The host's Debian codename: the guest runs the same release as the host's apt lists."""
    with open("/etc/os-release") as f:
        for line in f:
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    raise GuestImageError("no VERSION_CODENAME in /etc/os-release")


def apt_mirror(suite: str) -> str:
    """The archive apt is configured with for ``suite`` (debootstrap uses the same one)."""
    out = _run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(CODENAME) $(COMPONENT)",
                "Created-By: Packages"], timeout=60)
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == suite and parts[2] == "main":
            return parts[0]
    raise GuestImageError(f"apt has no '{suite} main' source; run apt-get update")


def current_kernel_package() -> tuple[str, str]:
    """(``linux-image-X-amd64``, version) that ``linux-image-amd64`` points at today.

    ``GUEST_KERNEL_PACKAGE=linux-image-X-amd64`` pins the package (its candidate version).
    """
    pinned = os.environ.get("GUEST_KERNEL_PACKAGE")
    for attempt in range(2):
        if pinned:
            show = subprocess.run(["apt-cache", "show", "--no-all-versions", pinned], capture_output=True,
                                  text=True, timeout=60).stdout
            v = re.search(r"^Version: (\S+)", show, re.M)
            if v:
                return pinned, v.group(1)
            if attempt == 0:
                _apt_update()
            continue
        out = subprocess.run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True,
                             text=True, timeout=60).stdout
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*-amd64)\b", out)
        if m:
            name = m.group(1)
            show = _run(["apt-cache", "show", "--no-all-versions", name], timeout=60)
            v = re.search(r"^Version: (\S+)", show, re.M)
            if v:
                return name, v.group(1)
        if attempt == 0:
            _apt_update()
    raise GuestImageError(f"apt-cache does not know {pinned or 'linux-image-amd64'}")


def _apt_update() -> None:
    _run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update", "-qq"], timeout=600)


def resolve_inputs() -> BuildInputs:
    suite = host_suite()
    kpkg, kver = current_kernel_package()
    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    return BuildInputs(suite=suite, mirror=apt_mirror(suite), kernel_package=kpkg,
                       kernel_package_version=kver, builder_digest=digest)


def find_image(inputs: BuildInputs | None = None) -> GuestImage | None:
    """The cached image for ``inputs`` (default: today's), or None when not built yet."""
    inputs = inputs or resolve_inputs()
    d = cache_root() / inputs.key()
    try:
        manifest = json.loads((d / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return GuestImage(d, inputs.key(), manifest["kernel_version"])


def ensure_image(*, force: bool = False, log: Callable[[str], None] | None = None) -> GuestImage:
    """Return the cached image, building it first when missing (or when ``force``)."""
    log = log or (lambda msg: print(f"guest-image: {msg}", file=sys.stderr, flush=True))
    inputs = resolve_inputs()
    if not force:
        image = find_image(inputs)
        if image is not None:
            _mark_used(image.directory)
            return image
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock", log):
        if not force:
            image = find_image(inputs)
            if image is not None:       # another process built it while we waited
                return image
        for stale in root.glob(".build-*"):   # leftovers of a killed build (we hold the lock)
            _remove_tree(stale)
        try:
            return _build(inputs, root, log)
        except _StaleAptLists as e:
            log(f"{e}; updating apt lists and retrying")
            _apt_update()
            inputs = resolve_inputs()
            image = None if force else find_image(inputs)
            return image or _build(inputs, root, log)


def _mark_used(directory: Path) -> None:
    stamp = directory / "last-used"
    try:
        if time.time() - stamp.stat().st_mtime < 3600:
            return
    except FileNotFoundError:
        pass
    try:
        stamp.touch()
    except OSError:
        pass   # a read-only cache is fine


def _prune_unused(root: Path, keep: str) -> None:
    """Drop images nobody used for UNUSED_DAYS (other branches may still use recent ones)."""
    for entry in root.iterdir():
        if not entry.is_dir() or entry.name.startswith(".") or entry.name == keep:
            continue
        stamp = entry / "last-used"
        used = stamp.stat().st_mtime if stamp.exists() else entry.stat().st_mtime
        if time.time() - used > UNUSED_DAYS * 86400:
            _remove_tree(entry)


class _locked:
    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        self.path, self.log, self.fd = path, log, -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + LOCK_TIMEOUT
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if not told:
                    self.log(f"waiting for another build holding {self.path}")
                    told = True
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    raise GuestImageError(f"{self.path} still locked after {LOCK_TIMEOUT:.0f}s") from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].replace("\\040", " ") for line in f]
    return sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf that first unmounts what a killed debootstrap may have left mounted inside."""
    for point in _mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)
    if _mounts_under(path):
        raise GuestImageError(f"cannot remove {path}: still mounted: {_mounts_under(path)}")
    shutil.rmtree(path, ignore_errors=True)


def _build(inputs: BuildInputs, root: Path, log: Callable[[str], None]) -> GuestImage:
    key = inputs.key()
    work = root / f".build-{key}-{os.getpid()}"
    _remove_tree(work)
    work.mkdir()
    t0 = time.monotonic()
    try:
        log(f"kernel {inputs.kernel_package} {inputs.kernel_package_version}")
        kdir = work / "kernel"
        kernel_version, vmlinuz = _extract_kernel(inputs, work, kdir)
        t_kernel = time.monotonic()
        rootfs = work / "root"
        log(f"debootstrap {inputs.suite} (+{','.join(inputs.packages)}) from {inputs.mirror}")
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(inputs.packages)}",
              inputs.suite, str(rootfs), inputs.mirror], timeout=BUILD_TIMEOUT)
        if _mounts_under(rootfs):
            raise GuestImageError(f"debootstrap left mounts: {_mounts_under(rootfs)}")
        modules = _install_modules(kdir, rootfs, kernel_version, inputs.modules)
        t_boot = time.monotonic()
        _prune(rootfs)
        _configure(rootfs)
        out = work / "out"
        out.mkdir()
        shutil.copy2(vmlinuz, out / "vmlinuz")
        log("packing initramfs (cpio + zstd)")
        _pack(rootfs, out / "initramfs.img")
        t_pack = time.monotonic()
        manifest = {
            "key": key, "inputs": inputs.__dict__, "kernel_version": kernel_version,
            "modules": modules, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": {"kernel": round(t_kernel - t0, 1), "debootstrap": round(t_boot - t_kernel, 1),
                        "pack": round(t_pack - t_boot, 1), "total": round(t_pack - t0, 1)},
            "initramfs_bytes": (out / "initramfs.img").stat().st_size,
        }
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        final = root / key
        if final.exists():
            _remove_tree(final)
        out.rename(final)
        _mark_used(final)
        _prune_unused(root, key)
        log(f"built {final} in {t_pack - t0:.0f}s ({manifest['initramfs_bytes'] >> 20} MiB initramfs)")
        return GuestImage(final, key, kernel_version)
    finally:
        _remove_tree(work)


def _extract_kernel(inputs: BuildInputs, work: Path, kdir: Path) -> tuple[str, Path]:
    dl = work / "deb"
    dl.mkdir()
    try:
        _run(["apt-get", "download", f"{inputs.kernel_package}={inputs.kernel_package_version}"],
             cwd=dl, timeout=600)
    except GuestImageError as e:
        if "404" in str(e) or "Failed to fetch" in str(e):
            raise _StaleAptLists(f"the archive no longer has {inputs.kernel_package} "
                                 f"{inputs.kernel_package_version}") from e
        raise
    debs = list(dl.glob("*.deb"))
    if len(debs) != 1:
        raise GuestImageError(f"apt-get download gave {debs}")
    _run(["dpkg-deb", "-x", str(debs[0]), str(kdir)], timeout=300)
    debs[0].unlink()
    mods = kdir / "lib" / "modules"
    versions = [p.name for p in mods.iterdir()] if mods.is_dir() else []
    if len(versions) != 1:
        raise GuestImageError(f"kernel package has module trees {versions}")
    version = versions[0]
    vmlinuz = kdir / "boot" / f"vmlinuz-{version}"
    if not vmlinuz.exists():
        raise GuestImageError(f"no {vmlinuz}")
    _run(["depmod", "-b", str(kdir), version], timeout=300)
    return version, vmlinuz


def _install_modules(kdir: Path, rootfs: Path, version: str, wanted: tuple[str, ...]) -> list[str]:
    """Copy the dependency closure of ``wanted`` into the root file system, then depmod there."""
    src_root = kdir / "lib" / "modules" / version
    files: set[str] = set()
    for name in wanted:
        out = _run(["modprobe", "-d", str(kdir), "-S", version, "--show-depends", name], timeout=60)
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod":
                files.add(os.path.relpath(parts[1], src_root))
    dst_root = rootfs / "usr" / "lib" / "modules" / version
    if not (rootfs / "lib").is_symlink():
        dst_root = rootfs / "lib" / "modules" / version
    for rel in sorted(files):
        dst = dst_root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src_root / rel, dst)
    for meta in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (src_root / meta).exists():
            shutil.copy2(src_root / meta, dst_root / meta)
    _run(["depmod", "-b", str(rootfs), version], timeout=300)
    return sorted(files)


def _prune(rootfs: Path) -> None:
    for rel in PRUNE:
        p = rootfs / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def _configure(rootfs: Path) -> None:
    """Fixed files of the image; per-run settings (multipath.conf, IQN) come with the overlay."""
    (rootfs / "init").write_text(BARE_INIT)
    (rootfs / "init").chmod(0o755)
    (rootfs / "etc" / "hostname").write_text("vmtest\n")
    (rootfs / "etc" / "fstab").write_text("")
    for d in ("host", "run", "tmp", "run/lock"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)


def _pack(rootfs: Path, dest: Path) -> None:
    """``find | cpio -H newc | zstd``: zstd unpacks fastest under TCG."""
    names = subprocess.run(["find", ".", "-mindepth", "1", "-print0"], cwd=rootfs, check=True,
                           capture_output=True, timeout=300).stdout
    names = b"\0".join(sorted(n for n in names.split(b"\0") if n)) + b"\0"
    with open(dest, "wb") as out:
        cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--null", "--reproducible", "--quiet"],
                                cwd=rootfs, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        zstd = subprocess.Popen(["zstd", "-3", "-T0", "-q", "-c"], stdin=cpio.stdout, stdout=out)
        assert cpio.stdin is not None and cpio.stdout is not None
        cpio.stdout.close()
        cpio.stdin.write(names)
        cpio.stdin.close()
        if cpio.wait(timeout=600) != 0 or zstd.wait(timeout=600) != 0:
            raise GuestImageError("cpio | zstd failed")
