"""What every GramLink process shares at run time: one log format, one exit-code table.

Imports nothing of ours; every process package may import it.
"""
