"""The Ailuro pilot: runs on a worker node, takes jobs from the dispatcher and runs them.

Entry points: ``ailuro pilot`` / ``python -m pilot`` (command line), :func:`pilot.main.run_pilot`
(from Python). The pilot depends on ``ailuro`` (wire stubs, error codes) and ``ddm`` only; it never
imports the dispatcher.
"""
