"""Shared fixtures. Tests that need ../shared/data skip cleanly when it is absent."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
IMAGENET_SAMPLE = SHARED_DATA / "imagenet-sample"

torch.set_num_threads(1)


def pytest_addoption(parser) -> None:
    parser.addoption("--shard", default=None, help="run shard i of n (i/n, 1-based) of the collected tests")


def pytest_collection_modifyitems(config, items) -> None:
    shard = config.getoption("--shard")
    if not shard:
        return
    index, count = (int(x) for x in shard.split("/"))
    if not 1 <= index <= count:
        raise pytest.UsageError(f"--shard {shard}: expected i/n with 1 <= i <= n")
    keep = [item for position, item in enumerate(sorted(items, key=lambda i: i.nodeid)) if position % count == index - 1]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = [item for item in items if item in keep]


@pytest.fixture(scope="session")
def imagenet_sample() -> Path:
    """The 500 labelled ImageNet photos beside the repository (never copied into it)."""
    if not IMAGENET_SAMPLE.is_dir():
        pytest.skip(f"{IMAGENET_SAMPLE} is absent; it holds the real test photos")
    return IMAGENET_SAMPLE


def randomize_batchnorm(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every BatchNorm non-trivial statistics, so a wrong epsilon or order shows in the output."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return model.eval()


_EXPORTS: dict = {}


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Exports (model, target, options) once per test worker and returns the Artifact."""
    from edgekit import export

    def get(model: str, target: str, **options):
        key = (model, target, tuple(sorted(options.items())))
        if key not in _EXPORTS:
            out = tmp_path_factory.mktemp(f"{model}-{target}")
            _EXPORTS[key] = export(model, target, out=out, progress=False, **options)
        return _EXPORTS[key]

    return get
