"""Capacity: the largest load (concurrency or request rate) a deployment serves within its
SLOs, found by a search of confidence-decided probes (docs/capacity.md).

- ``search``: the strategy (double from the minimum until a probe fails, then bisect to a
  tolerance) and the budgets it never exceeds;
- ``probe``: one probe on the mesh, judged with the verdict machinery of the pytest plugin
  (order-statistic bounds, ``extend`` chunks at Bonferroni confidence, validity);
- ``model``: probes and the search's result, ``capacity.json``;
- ``cli``: ``aiperf capacity``.
"""

from __future__ import annotations

from aiperf.capacity.model import CapacityResult, Probe
from aiperf.capacity.search import Budget, BudgetExhausted, Ledger, Strategy, run_search

__all__ = ["Budget", "BudgetExhausted", "CapacityResult", "Ledger", "Probe", "Strategy",
           "run_search"]
