import random

import numpy as np
import torch

from worker.ml.device import pick_device, seed_everything


def test_cpu_runs_in_float32():
    device = pick_device("cpu")
    assert device.type == "cpu" and device.dtype == torch.float32
    assert device.torch == torch.device("cpu")


def test_auto_picks_cuda_with_bfloat16_only_when_available():
    device = pick_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda" and device.dtype in (torch.bfloat16, torch.float16)
    else:
        assert device == pick_device("cpu")


def test_seed_everything_repeats_random_numpy_and_torch_draws():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
