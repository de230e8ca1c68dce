"""Shared code of the E-MM1 dataset builders (`emm1.py`, `eshot.py`), their CLI and tools."""
