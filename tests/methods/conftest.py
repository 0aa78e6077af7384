"""Fixtures of the translator tests (helpers live in translator_testing.py)."""

from __future__ import annotations

import warnings

import pytest
from evalkit.data import get_dataset


@pytest.fixture(autouse=True)
def _quiet_random_vgg():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="VGG19 perceptual network is RANDOMLY INITIALISED")
        yield


@pytest.fixture(scope="session")
def train_set():
    return get_dataset("shapes", split="train", size=32, n=8, seed=0)
