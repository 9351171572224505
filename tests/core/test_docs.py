"""The examples in the docstrings of every compressm_core module run and give what they show."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import compressm_core

MODULES = sorted(
    f"compressm_core.{info.name}" for info in pkgutil.iter_modules(compressm_core.__path__)
)


@pytest.mark.parametrize("name", ["compressm_core", *MODULES])
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
