"""Phantom cases chosen by the fractures they hold, for tests that need a given fracture kind."""
from __future__ import annotations

import numpy as np

from nnunet_fracture.dataset_conversion.phantom import generate_case, is_fractured
from nnunet_fracture.dataset_conversion.phantom_anatomy import field_of_view, sample_spine
from nnunet_fracture.dataset_conversion.phantom_fractures import sample_fractures


def cases_with(kind: str, want: int, seed: int = 9) -> list:
    """The first ``want`` cases of phantom ``seed`` (1.5 mm) that hold a fracture of ``kind``, generated in full;
    the fractures are sampled first, so only those cases are rendered."""
    found = []
    for index in range(40):
        rng = np.random.default_rng([seed, index, 0])
        spine = sample_spine(rng)
        run, _ = field_of_view(spine, rng, (1.5, 1.5, 1.5))
        if any(f.kind == kind for f in sample_fractures(rng, spine, run, is_fractured(index, seed))):
            found.append(generate_case(index, seed=seed))
            if len(found) == want:
                return found
    raise AssertionError(f"no {kind} fracture in 40 cases")
