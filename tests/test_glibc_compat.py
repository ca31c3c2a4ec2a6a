"""The glibc < 2.39 workaround: ELF version patching, the shim, and TFX's
native modules actually working (MLMD on SQLite, TFDV statistics)."""
import pathlib
import struct
import sys

import numpy as np
import pytest

COMPAT = pathlib.Path(__file__).resolve().parents[1] / "compat" / "glibc239"
sys.path.insert(0, str(COMPAT))
import elf_versions  # noqa: E402
import install  # noqa: E402


def _extension(module, relative):
    return pathlib.Path(module.__file__).parent / relative


def test_ml_metadata_sqlite_store_round_trip(tmp_path):
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "mlmd.sqlite")
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    store = metadata_store.MetadataStore(config)
    artifact_type = metadata_store_pb2.ArtifactType(name="Examples")
    artifact_type.properties["split"] = metadata_store_pb2.STRING
    type_id = store.put_artifact_type(artifact_type)
    artifact = metadata_store_pb2.Artifact(type_id=type_id, uri="/data/train")
    artifact.properties["split"].string_value = "train"
    [artifact_id] = store.put_artifacts([artifact])

    reopened = metadata_store.MetadataStore(config)
    [read] = reopened.get_artifacts_by_id([artifact_id])
    assert read.uri == "/data/train"
    assert read.properties["split"].string_value == "train"


def test_tfdv_statistics_on_real_numbers():
    import pandas as pd
    import tensorflow_data_validation as tfdv

    values = np.array([1.0, 2.0, 3.0, 10.0])
    stats = tfdv.generate_statistics_from_dataframe(pd.DataFrame({"x": values}))
    [feature] = stats.datasets[0].features
    assert stats.datasets[0].num_examples == 4
    assert feature.num_stats.mean == pytest.approx(values.mean())
    assert feature.num_stats.max == 10.0


def test_installed_extensions_have_no_unmet_strong_requirement():
    """Every version a native module needs is defined by the system, or weak."""
    import ml_metadata
    import tensorflow_data_validation

    system = install._SystemVersions()
    for path in (_extension(ml_metadata, "metadata_store/pywrap/metadata_store_extension.so"),
                 _extension(tensorflow_data_validation,
                            "pywrap/tensorflow_data_validation_extension.so")):
        for need in elf_versions.version_needs(path.read_bytes(), str(path)):
            assert need.weak or system.defines(need.library, need.version), (path, need)


def test_shim_defines_exactly_the_versions_the_wheels_lack():
    if not install.needed():
        pytest.skip("glibc >= 2.39: no shim is built")
    import ml_metadata

    venv = pathlib.Path(sys.prefix)
    shim = venv / "lib" / "facealign-glibc239" / install.SHIM_NAME
    defined = elf_versions.versioned_symbols(shim.read_bytes(), str(shim), defined=True)
    assert defined["GLIBC_2.38"] == {"__isoc23_strtol", "__isoc23_strtoll",
                                     "__isoc23_strtoul", "__isoc23_strtoull"}
    assert defined["CXXABI_1.3.15"] == {"__cxa_call_terminate"}
    assert defined["GLIBCXX_3.4.32"] == {"_ZSt21ios_base_library_initv"}
    ext = _extension(ml_metadata, "metadata_store/pywrap/metadata_store_extension.so")
    needed = elf_versions.versioned_symbols(ext.read_bytes(), str(ext))
    assert needed["CXXABI_1.3.15"] <= defined["CXXABI_1.3.15"]


def test_weaken_sets_only_the_named_flags():
    path = pathlib.Path(install.system_library_path("libstdc++.so.6")).resolve()
    data = path.read_bytes()
    needs = elf_versions.version_needs(data, str(path))
    target = next(n for n in needs if not n.weak)
    patched = bytearray(data)
    changed = elf_versions.weaken(patched, {(target.library, target.version)})
    assert [(c.library, c.version) for c in changed] == [(target.library, target.version)]
    after = {(n.library, n.version): n.weak for n in elf_versions.version_needs(bytes(patched))}
    assert after[(target.library, target.version)] is True
    diff = [i for i, (a, b) in enumerate(zip(data, patched)) if a != b]
    assert diff == [target.flags_offset]
    assert struct.unpack_from("<H", patched, target.flags_offset)[0] & elf_versions.VER_FLG_WEAK


def test_version_definitions_of_the_system_libc():
    path = install.system_library_path("libc.so.6")
    versions = elf_versions.version_definitions(path.read_bytes(), str(path))
    assert "GLIBC_2.2.5" in versions
    major, minor = install.glibc_version()
    assert f"GLIBC_{major}.{minor}" in versions


def test_not_an_elf_file_is_a_clear_error(tmp_path):
    with pytest.raises(elf_versions.ElfError, match="not a 64-bit"):
        elf_versions.version_needs(b"#!/bin/sh\n" + b"\0" * 64, "script.sh")


def test_is_a_no_op_on_new_glibc(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(install.os, "confstr", lambda name: "glibc 2.39")
    assert not install.needed()
    assert install.main(["--venv", str(tmp_path / "venv"), "--wheel-dir",
                         str(tmp_path / "wheels")]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_old_glibc_is_detected(monkeypatch):
    monkeypatch.setattr(install.os, "confstr", lambda name: "glibc 2.36")
    assert install.glibc_version() == (2, 36)
    assert install.needed()
