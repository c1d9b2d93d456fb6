"""The Ailuro pilot: runs on a worker node, takes jobs from the dispatcher and runs them.

Entry points: ``python -m pilot`` (its own command line, :mod:`pilot.__main__`; ``ailuro pilot``
delegates to it), :func:`pilot.main.run_pilot` (from Python). The pilot needs only the standard
library, grpcio and protobuf: from ``ailuro`` it uses the wire stubs, errors, error codes, targets
and the shared vocabulary, from ``ddm`` the checksum/protocol/storage kit; it never imports the
dispatcher, the backends or the CLI (``tests/unit/test_layers.py``).
"""
