"""Makes the manylinux_2_39 TFX wheels usable on glibc < 2.39 (Debian 12).

ml-metadata and tensorflow-data-validation 1.21.0 ship only manylinux_2_39
wheels for CPython 3.11; their extension modules reference six symbols that
glibc 2.36 / GCC 12 lack. On such a system this script:

1. builds ``libglibc239_shim.so``, which defines those symbols under the exact
   version nodes the wheels ask for (shim.cc, shim.map);
2. downloads the wheels, marks the missing version requirements weak in each
   extension (so the loader accepts them), after checking that the shim
   defines every symbol bound to them, and repacks them tagged linux_x86_64;
3. writes a ``.pth`` file into the venv that loads the shim RTLD_GLOBAL in
   every Python process (Beam workers included) before anything else.

On glibc >= 2.39 it does nothing: the wheels install from the registry as
they are. Usage: ``python install.py --venv .venv --wheel-dir DIR`` (run with
the venv's interpreter); pip then installs with ``--find-links DIR``.
"""
from __future__ import annotations

import argparse
import base64
import ctypes
import hashlib
import io
import os
import pathlib
import subprocess
import sys
import sysconfig
import zipfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import elf_versions  # noqa: E402  (sibling module; this file runs as a script)

PACKAGES = ("ml-metadata==1.21.0", "tensorflow-data-validation==1.21.0")
REQUIRED_GLIBC = (2, 39)
SHIM_NAME = "libglibc239_shim.so"
PTH_NAME = "facealign_glibc239_shim.pth"
LINUX_TAG = "linux_x86_64"


def glibc_version() -> tuple[int, int] | None:
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    except (ValueError, OSError, AttributeError):
        return None
    if name != "glibc":
        return None
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def needed() -> bool:
    version = glibc_version()
    return version is not None and version < REQUIRED_GLIBC


def system_library_path(soname: str) -> pathlib.Path:
    """The file the loader picks for `soname`, found by loading it here."""
    ctypes.CDLL(soname)
    for line in pathlib.Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and os.path.basename(parts[5]).startswith(soname):
            return pathlib.Path(parts[5])
    raise RuntimeError(f"cannot locate the system's {soname}")


def build_shim(out_dir: pathlib.Path) -> pathlib.Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / SHIM_NAME
    if out.exists() and out.stat().st_mtime >= max(
            (HERE / f).stat().st_mtime for f in ("shim.cc", "shim.map")):
        return out
    cmd = ["g++", "-O2", "-shared", "-fPIC", f"-Wl,--version-script={HERE / 'shim.map'}",
           "-o", str(out), str(HERE / "shim.cc")]
    subprocess.run(cmd, check=True)
    return out


class _SystemVersions:
    """Which versions each system library defines, read once per library."""

    def __init__(self):
        self._cache: dict[str, set[str]] = {}

    def defines(self, library: str, version: str) -> bool:
        if library not in self._cache:
            path = system_library_path(library)
            self._cache[library] = elf_versions.version_definitions(path.read_bytes(), str(path))
        return version in self._cache[library]


def patch_extension(data: bytes, name: str, system: _SystemVersions,
                    shim_symbols: dict[str, set[str]]) -> bytes | None:
    """Weakens the missing requirements of one .so; None if nothing is missing."""
    needs = elf_versions.version_needs(data, name)
    missing = {(n.library, n.version) for n in needs
               if not n.weak and not system.defines(n.library, n.version)}
    if not missing:
        return None
    wanted = elf_versions.versioned_symbols(data, name)
    for _, version in sorted(missing):
        uncovered = wanted.get(version, set()) - shim_symbols.get(version, set())
        if uncovered:
            raise RuntimeError(
                f"{name} needs {sorted(uncovered)} at {version}, which neither this "
                f"system nor the shim provides; extend compat/glibc239/shim.cc")
    patched = bytearray(data)
    changed = elf_versions.weaken(patched, missing)
    print(f"  {name}: weakened " + ", ".join(f"{c.version} ({c.library})" for c in changed))
    return bytes(patched)


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def repack_wheel(src: pathlib.Path, out_dir: pathlib.Path, system: _SystemVersions,
                 shim_symbols: dict[str, set[str]]) -> pathlib.Path:
    """Patched, re-tagged copy of `src` in `out_dir` (RECORD regenerated)."""
    stem_parts = src.name[:-len(".whl")].split("-")
    platform_tag = stem_parts[-1]
    target = out_dir / src.name.replace(platform_tag, LINUX_TAG)
    with zipfile.ZipFile(src) as zin:
        files = {info.filename: zin.read(info) for info in zin.infolist()
                 if not info.is_dir()}
    record_name = next(n for n in files if n.endswith(".dist-info/RECORD"))
    wheel_name = next(n for n in files if n.endswith(".dist-info/WHEEL"))
    for name, data in files.items():
        if name.endswith(".so") or ".so." in name:
            patched = patch_extension(data, name, system, shim_symbols)
            if patched is not None:
                files[name] = patched
    files[wheel_name] = files[wheel_name].decode().replace(platform_tag, LINUX_TAG).encode()
    records = [_record_line(n, d) for n, d in files.items() if n != record_name]
    files[record_name] = ("\n".join(records + [f"{record_name},,"]) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in files.items():
            zout.writestr(name, data)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(target)
    return target


def download(requirement: str, cache: pathlib.Path) -> pathlib.Path:
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    existing = [p for p in cache.glob(f"{prefix}cp{py}-*manylinux_2_39_x86_64.whl")]
    if existing:
        return existing[0]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", f"{sys.version_info.major}."
                    f"{sys.version_info.minor}", "--platform", "manylinux_2_39_x86_64",
                    "-d", str(cache), requirement], check=True)
    return next(cache.glob(f"{prefix}cp{py}-*manylinux_2_39_x86_64.whl"))


def write_pth(venv: pathlib.Path, shim: pathlib.Path) -> pathlib.Path:
    site = pathlib.Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})
                        ["purelib"])
    pth = site / PTH_NAME
    pth.write_text(
        "import os, ctypes; p = " + repr(str(shim)) +
        "; os.path.exists(p) and ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)\n")
    return pth


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=pathlib.Path, required=True)
    parser.add_argument("--wheel-dir", type=pathlib.Path, required=True)
    args = parser.parse_args(argv)
    version = glibc_version()
    if not needed():
        print(f"glibc compat: glibc {version} needs no shim; nothing to do")
        return 0
    print(f"glibc compat: glibc {version[0]}.{version[1]} < 2.39, "
          f"patching {', '.join(PACKAGES)}")
    venv = args.venv.resolve()
    shim = build_shim(venv / "lib" / "facealign-glibc239")
    shim_symbols = elf_versions.versioned_symbols(shim.read_bytes(), str(shim), defined=True)
    args.wheel_dir.mkdir(parents=True, exist_ok=True)
    system = _SystemVersions()
    cache = args.wheel_dir / "original"
    cache.mkdir(exist_ok=True)
    for requirement in PACKAGES:
        out = repack_wheel(download(requirement, cache), args.wheel_dir, system, shim_symbols)
        print(f"  -> {out.name}")
    print(f"  shim loaded by {write_pth(venv, shim)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
