"""Where a PyTorch run computes, and the settings that make it repeat itself there."""

import contextlib
import os

import torch


def select_device(name="auto"):
    """'auto': CUDA when available, else the CPU. 'cuda' where there is none is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available on this machine")
    return torch.device(name)


@contextlib.contextmanager
def deterministic_settings(device):
    """Ask for deterministic algorithms on CUDA; put every setting back on leaving.

    On CUDA: torch.use_deterministic_algorithms(True, warn_only=True), cuDNN without
    benchmarking and deterministic, and CUBLAS_WORKSPACE_CONFIG=:4096:8 (what cuBLAS needs
    to be deterministic) unless the user set it. cuBLAS reads that variable when CUDA first
    multiplies matrices in the process, so it is set here, before this run's first CUDA
    work; a program that used CUDA before must set it itself. On the CPU nothing changes:
    every CPU op this model uses is deterministic already, and the switch imports
    torch._inductor (over 1 s).
    """
    saved_flags = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    saved_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    saved_env = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        if device.type == "cuda":
            if saved_env is None:
                os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
        yield
    finally:
        if saved_env is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved_env
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cudnn
        now = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        if now != saved_flags:  # only then: the call costs an import (see above)
            torch.use_deterministic_algorithms(saved_flags[0], warn_only=saved_flags[1])
