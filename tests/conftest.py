import os

# Tests run on the CPU; float64 is enabled per-test where an oracle needs it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
