"""Slurm backend: pilots as ``sbatch`` job arrays; states from ``squeue`` reconciled with ``sacct``."""

from backends.slurm.backend import SlurmBackend

__all__ = ["SlurmBackend"]
