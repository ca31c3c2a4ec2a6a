"""trainer.precision: auto picks bfloat16 only where the hardware computes in it."""
import pytest

from facealign.core import config as config_lib
from trainer import precision

ZEN4 = {"avx2", "avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}
ZEN3 = {"avx2", "fma", "sse4_2"}


@pytest.mark.parametrize("flags, expected", [(ZEN4, "mixed_bfloat16"),
                                             (SAPPHIRE_RAPIDS, "mixed_bfloat16"),
                                             (ZEN3, "float32"), (set(), "float32")])
def test_auto_follows_the_cpu_flags(flags, expected):
    chosen, why = precision.choose("auto", flags=flags, gpus=[], model="Test CPU")
    assert chosen == expected
    assert why.startswith("Test CPU ")
    assert ("avx512_bf16" in why) == (expected == "mixed_bfloat16" or "no bfloat16" in why)


def test_a_bf16_gpu_wins_and_an_explicit_setting_is_kept():
    assert precision.choose("auto", flags=ZEN3, gpus=["NVIDIA H200"])[0] == "mixed_bfloat16"
    assert precision.choose("float32", flags=SAPPHIRE_RAPIDS, gpus=["x"]) == (
        "float32", "trainer.precision is float32")
    assert precision.choose("mixed_bfloat16", flags=ZEN3, gpus=[])[0] == "mixed_bfloat16"


def test_cpuinfo_is_read(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu avx2 avx512_bf16\n"
                    "processor\t: 1\nflags\t\t: fpu\n")
    assert precision.cpu_flags(str(info)) == {"fpu", "avx2", "avx512_bf16"}
    assert precision.cpu_model(str(info)) == "AMD EPYC 9B14"
    assert precision.cpu_flags(str(tmp_path / "missing")) == set()


def test_auto_is_the_default_and_the_shipped_configs_use_it():
    assert config_lib.TrainerSection().precision == "auto"
    for path in ("pipeline.yaml", "configs/300w.yaml", "configs/300w-aan.yaml"):
        assert config_lib.load(path).trainer.precision in ("auto",), path
