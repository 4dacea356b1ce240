"""Errors the runners classify: running out of memory is a status, not a crash."""

from __future__ import annotations


def test_out_of_memory_is_recognised_on_cpu_and_cuda() -> None:
    import torch

    from mixbench.errors import is_out_of_memory

    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 4 TB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))
