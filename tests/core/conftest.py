"""The ``xp`` fixture: each installed array namespace in turn (NumPy, array-api-strict, PyTorch on
CPU, JAX with 64-bit arrays). ``@pytest.mark.namespaces(...)`` restricts a test to some of them."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest

try:  # JAX tests compare against float64 oracles: enable 64-bit arrays before any is made
    import jax

    jax.config.update("jax_enable_x64", True)
except ImportError:
    pass

try:  # the tests' matrices are tiny; PyTorch's complex matmul on several CPU threads is then
    # ~100x slower than on one (seen on a 2-core machine: 20 ms instead of 16 us for 6x12x12)
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

NAMESPACE_MODULES = ["numpy", "array_api_strict", "torch", "jax.numpy"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "namespaces(*modules): run the test's `xp` over these array modules only"
    )


def pytest_generate_tests(metafunc):
    if "xp" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("namespaces")
        modules = list(marker.args) if marker else NAMESPACE_MODULES
        metafunc.parametrize("xp", modules, indirect=True, scope="session")


@pytest.fixture(scope="session")
def xp(request):
    """The namespace ``array_namespace`` returns for arrays made by the module ``request.param``."""
    module = pytest.importorskip(request.param)
    return array_api_compat.array_namespace(module.asarray(np.zeros(1)))
