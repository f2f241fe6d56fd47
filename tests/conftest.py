import os
import tempfile

# Tests run on the CPU; float64 is enabled per-test where an oracle needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# XLA's CPU eigh/svd/qr call OpenBLAS, whose threads fight XLA's own on a small machine (a
# 784x784 eigh took ~5 s instead of ~0.1 s on 2 cores): one BLAS thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# One persistent compilation cache for the whole session, inherited by the subprocesses the
# resume and multi-device tests start: a restarted run loads the executables it compiled
# before (the same binaries, so bitwise-identical numbers) instead of compiling again.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "genjax-test-jax-cache")
)
