"""Automated recovery: known failures get their known remedy, every action visible."""

from __future__ import annotations

from ._healer import Healer as Healer
from ._policy import HealPolicy

# The facade's names; Healer is this layer's interface to diagnosis (Diagnostics.healer), reachable
# from ``safla_diag.heal`` but not a facade name.
__all__ = ["HealPolicy"]
