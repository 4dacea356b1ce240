"""The conformance kit, where plugin authors import it (``from mixbench.testing import
check_mixer``). The checks live in ``mixbench.authoring.conformance``."""

from __future__ import annotations

from mixbench.authoring.conformance import (
    BATCH,
    DEFAULT_DIM,
    DEFAULT_GRIDS,
    MIXER_CHECKS,
    OPTIMIZER_CHECKS,
    causality_applies,
    check_mixer,
    check_mixer_batch_independence,
    check_mixer_causality,
    check_mixer_determinism,
    check_mixer_dtype,
    check_mixer_gradients,
    check_mixer_shape,
    check_optimizer,
    check_optimizer_decreases,
    check_optimizer_state_dict,
)

__all__ = [
    "BATCH",
    "DEFAULT_DIM",
    "DEFAULT_GRIDS",
    "MIXER_CHECKS",
    "OPTIMIZER_CHECKS",
    "causality_applies",
    "check_mixer",
    "check_mixer_batch_independence",
    "check_mixer_causality",
    "check_mixer_determinism",
    "check_mixer_dtype",
    "check_mixer_gradients",
    "check_mixer_shape",
    "check_optimizer",
    "check_optimizer_decreases",
    "check_optimizer_state_dict",
]
