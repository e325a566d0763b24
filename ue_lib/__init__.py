"""ue_lib: a runnable reproduction of *Unifying Specialist Image Embedding into Universal Image
Embedding* (Feng et al., 2020) and of three papers around it.

The layout (README, "What is in here"): a shared core (data, models, losses, evaluation,
training, verdicts, palette and figures), one folder per paper's system, and the run machinery
on top (profiles, run spec, run folder, runner, sweep, check, CLI, bench).

Importing the package pins the numerical libraries to their AVX2 code paths on x86 CPUs that
have AVX2 (`pin_cpu_code_paths`), before any of them loads: the same seed then gives the same
numbers on AVX2 and AVX-512 machines (measured: 548 of 2,606 smoke baseline rows differ
between the two otherwise). ``UE_CPU_ISA=native`` keeps each library's own choice.
"""

import os
import platform

# each library's switch to its AVX2 code: torch's kernels, oneDNN, MKL (with its conditional
# numerical reproducibility), OpenBLAS (numpy's and faiss's) and faiss's SIMD dispatch
AVX2_CODE_PATHS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "MKL_ENABLE_INSTRUCTIONS": "AVX2", "MKL_CBWR": "AVX2",
                   "OPENBLAS_CORETYPE": "Haswell", "FAISS_SIMD_LEVEL": "AVX2"}


def _has_avx2() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx2" in line for line in f)
    except OSError:
        return False


def pin_cpu_code_paths() -> dict[str, str]:
    """Set the variables of `AVX2_CODE_PATHS` that are not set already (so a user's own choice
    wins), on an x86-64 CPU with AVX2, unless ``UE_CPU_ISA=native``; returns what it set. They
    act only on libraries loaded afterwards; the runner's kernels and workers inherit them."""
    if os.environ.get("UE_CPU_ISA", "avx2").lower() == "native" or \
            platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2():
        return {}
    added = {k: v for k, v in AVX2_CODE_PATHS.items() if k not in os.environ}
    os.environ.update(added)
    return added


pin_cpu_code_paths()

from . import timing  # noqa: E402 (after the pins; standard library only)

timing.start_from_environment()  # only when profiled (`ue profile`)
