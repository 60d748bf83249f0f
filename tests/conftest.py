"""Shared pytest fixtures."""
import os

import pytest

os.environ.setdefault('HF_HUB_OFFLINE', '1')

# Set the process up once for the session, as the tools do (the mmcv.ops
# fallback before any test module imports mmseg, and the checkpoint safe
# globals); importing sera_mm does neither. tests/test_package.py checks
# the setup itself in fresh interpreters.
from sera_mm.utils import setup_runtime  # noqa: E402

setup_runtime()


@pytest.fixture(scope='session')
def synthetic_tiny_root(tmp_path_factory) -> str:
    """A tiny synthetic REFER dataset (24 images of 64x64, seed 0), generated
    once per test session; the layout ``configs/sera/sera_tiny_synthetic.py``
    expects under its ``data_root``."""
    from sera_mm.datasets.synthetic import generate_synthetic_refer
    root = str(tmp_path_factory.mktemp('synthetic') / 'synthetic_tiny')
    generate_synthetic_refer(
        root, num_images=24, seed=0, image_size=64, progress=False)
    return root
