"""CPython's garbage collector in a long-running service, set once start-up is done.

Readings turn into many short-lived dicts and tuples. With the default
thresholds (700, 10, 10) a generation-0 pass runs every few hundred of them,
and it walks every young object each time. The oldest generation's passes
also walk everything start-up made, which lives as long as the process.
:func:`settle` moves what exists now out of the collector's sight
(``gc.freeze``) and sets the service's own thresholds. Each service's
thresholds and what they measured are written where it calls this.
"""

from __future__ import annotations

import gc


def settle(thresholds: tuple[int, int, int]) -> None:
    """Freeze what start-up made and collect less often from now on."""
    gc.freeze()
    gc.set_threshold(*thresholds)
