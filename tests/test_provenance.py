"""The device line of a run's provenance names the CPU and its bf16 instruction sets: bf16-autocast runs are
bit-reproducible only on the same kind of CPU, so a board must say which one it ran on."""

from __future__ import annotations

import platform

import torch

from ctrbench.provenance import cpu_model, environment

EPYC = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14  96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9R14  96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""
XEON = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: avx2 amx_tile amx_bf16 avx512_bf16\n"
OLD = "model name\t: Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz\nflags\t\t: sse2 avx2 fma\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd bf16\nCPU implementer\t: 0x41\n"


def test_model_name_and_bf16_flags() -> None:
    assert cpu_model(EPYC) == "AMD EPYC 9R14 96-Core Processor, avx512_bf16"  # first CPU, spaces collapsed
    assert cpu_model(XEON) == "Intel(R) Xeon(R) Processor, amx_bf16, avx512_bf16"
    assert cpu_model(OLD) == "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz"  # no bf16 kernels: nothing appended
    assert cpu_model(ARM) == ""  # no model name, no x86 bf16 flags
    assert cpu_model("") == ""


def test_the_cpu_device_line_carries_it() -> None:
    line = environment(torch.device("cpu"), 1)["device"]
    assert line.startswith(f"cpu (1 thread, {platform.machine()}")
    model = cpu_model()
    assert (model in line) if model else line == f"cpu (1 thread, {platform.machine()})"
    assert environment(torch.device("cpu"), 2)["device"].startswith("cpu (2 threads, ")
