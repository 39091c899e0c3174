"""Device choice and seeding, decided once per worker process and passed down.

ML functions take a `Device` instead of probing CUDA themselves, so a task and its tests
agree on where tensors live and in which precision.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

DeviceChoice = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class Device:
    """Where models run and the floating-point type of their weights.

    CUDA gets bfloat16 (half the memory, tensor cores); CPU keeps float32 because CPU bf16
    kernels are slow without AMX and greedy outputs should match a plain fp32 run.
    """

    type: Literal["cpu", "cuda"]
    dtype: torch.dtype

    @property
    def torch(self) -> torch.device:
        return torch.device(self.type)


def pick_device(prefer: DeviceChoice = "auto") -> Device:
    """Return CUDA + bfloat16 when available (or asked for), else CPU + float32.

    Raises RuntimeError when `prefer="cuda"` and no GPU is visible, rather than silently
    running a GPU-sized job on the CPU.
    """
    if prefer == "cpu":
        return Device("cpu", torch.float32)
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Device("cuda", dtype)
    if prefer == "cuda":
        raise RuntimeError("CUDA was requested but torch.cuda.is_available() is False")
    return Device("cpu", torch.float32)


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX). There bf16
    autocast trains a BERT-sized model about twice as fast as fp32; elsewhere CPU bf16 is
    emulated and slower. (A private torch probe: False if a release drops it.)"""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe())


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global state and torch (CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
