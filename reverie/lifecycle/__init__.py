"""The lifecycle: the day and the night of one data directory, behind one facade.

  facade.py     Reverie: ingest, recall, answer, sleep, activate, forget, reconcile
  select.py     which episodes a night consolidates (the one rule)
  state.py      the night's SleepState to and from a snapshot's state files
  reconcile.py  episode marks against the active lineage (after a kill or a rollback)
  forget.py     deletion that reaches the weights (exact rebuild or abstention lesson)
"""

from reverie.lifecycle.facade import Reverie

__all__ = ["Reverie"]
