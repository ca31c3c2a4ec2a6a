"""Read and weaken ELF symbol-version requirements (x86-64, little endian).

The dynamic loader refuses a shared object that requires a symbol version
(say ``GLIBC_2.38``) its named library does not define, unless the
requirement carries the weak flag. Marking exactly the missing requirements
weak lets the loader accept the file; the symbols themselves are then
resolved from a shim library loaded beforehand with RTLD_GLOBAL.
"""
from __future__ import annotations

import dataclasses
import struct

SHT_DYNSYM = 11
SHT_GNU_VERDEF = 0x6FFFFFFD
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF
VER_FLG_WEAK = 0x2
_ELF64_LE = b"\x7fELF\x02\x01"


class ElfError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class _Section:
    type: int
    offset: int
    size: int
    link: int
    entsize: int


@dataclasses.dataclass(frozen=True)
class VersionNeed:
    """One required version (a Vernaux entry) of one needed library."""

    library: str
    version: str
    index: int
    flags: int
    flags_offset: int

    @property
    def weak(self) -> bool:
        return bool(self.flags & VER_FLG_WEAK)


def _sections(data: bytes, path: str) -> list[_Section]:
    if data[:6] != _ELF64_LE:
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    out = []
    for i in range(shnum):
        _, stype, _, _, off, size, link, _, _, entsize = struct.unpack_from(
            "<IIQQQQIIQQ", data, shoff + i * shentsize)
        out.append(_Section(stype, off, size, link, entsize))
    return out


def _string(data: bytes, strtab: _Section, offset: int) -> str:
    start = strtab.offset + offset
    return data[start:data.index(b"\0", start)].decode()


def _one(sections: list[_Section], stype: int) -> _Section | None:
    found = [s for s in sections if s.type == stype]
    return found[0] if found else None


def version_needs(data: bytes, path: str = "<bytes>") -> list[VersionNeed]:
    """All (library, version) requirements in the .gnu.version_r section."""
    sections = _sections(data, path)
    verneed = _one(sections, SHT_GNU_VERNEED)
    if verneed is None:
        return []
    strtab = sections[verneed.link]
    needs, pos = [], verneed.offset
    while True:
        _, cnt, file_off, aux, nxt = struct.unpack_from("<HHIII", data, pos)
        library = _string(data, strtab, file_off)
        apos = pos + aux
        for _ in range(cnt):
            _, flags, other, name, anext = struct.unpack_from("<IHHII", data, apos)
            needs.append(VersionNeed(library, _string(data, strtab, name), other,
                                     flags, apos + 4))
            apos += anext
        if not nxt:
            return needs
        pos += nxt


def version_definitions(data: bytes, path: str = "<bytes>") -> set[str]:
    """Names of the versions a library defines (.gnu.version_d)."""
    sections = _sections(data, path)
    verdef = _one(sections, SHT_GNU_VERDEF)
    if verdef is None:
        return set()
    strtab = sections[verdef.link]
    names, pos = set(), verdef.offset
    while True:
        _, _, _, cnt, _, aux, nxt = struct.unpack_from("<HHHHIII", data, pos)
        if cnt:
            name_off = struct.unpack_from("<I", data, pos + aux)[0]
            names.add(_string(data, strtab, name_off))
        if not nxt:
            return names
        pos += nxt


def versioned_symbols(data: bytes, path: str = "<bytes>",
                      defined: bool = False) -> dict[str, set[str]]:
    """Symbol names by version: undefined (needed) ones, or the defined ones."""
    sections = _sections(data, path)
    dynsym, versym = _one(sections, SHT_DYNSYM), _one(sections, SHT_GNU_VERSYM)
    if dynsym is None or versym is None:
        return {}
    if defined:
        index_names = _definition_indices(data, sections)
    else:
        index_names = {n.index: n.version for n in version_needs(data, path)}
    strtab = sections[dynsym.link]
    out: dict[str, set[str]] = {}
    for i in range(dynsym.size // dynsym.entsize):
        name_off, _, _, shndx, _, _ = struct.unpack_from(
            "<IBBHQQ", data, dynsym.offset + i * dynsym.entsize)
        is_defined = shndx != 0
        ndx = struct.unpack_from("<H", data, versym.offset + 2 * i)[0] & 0x7FFF
        if is_defined == defined and ndx in index_names:
            name = _string(data, strtab, name_off)
            if name != index_names[ndx]:  # skip the version's own marker symbol
                out.setdefault(index_names[ndx], set()).add(name)
    return out


def _definition_indices(data: bytes, sections: list[_Section]) -> dict[int, str]:
    verdef = _one(sections, SHT_GNU_VERDEF)
    if verdef is None:
        return {}
    strtab = sections[verdef.link]
    out, pos = {}, verdef.offset
    while True:
        _, _, ndx, cnt, _, aux, nxt = struct.unpack_from("<HHHHIII", data, pos)
        if cnt:
            out[ndx] = _string(data, strtab, struct.unpack_from("<I", data, pos + aux)[0])
        if not nxt:
            return out
        pos += nxt


def weaken(data: bytearray, missing: set[tuple[str, str]]) -> list[VersionNeed]:
    """Sets VER_FLG_WEAK on the (library, version) requirements in `missing`."""
    changed = []
    for need in version_needs(bytes(data)):
        if (need.library, need.version) in missing and not need.weak:
            struct.pack_into("<H", data, need.flags_offset, need.flags | VER_FLG_WEAK)
            changed.append(need)
    return changed
