"""Flowyard: DAG workflows over a job queue, in one process with one SQLite file."""

__version__ = "0.1.0"
