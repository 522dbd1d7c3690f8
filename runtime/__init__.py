"""What every GramLink process shares at run time: one log format (``logs``), one
exit-code table (``exits``), one retry policy (``backoff``) and host slots (``slots``).

Imports nothing of ours; every process package may import it.
"""
