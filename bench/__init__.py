"""Benchmarks (`make bench`): each module measures one path against a real PostgreSQL on
this machine and prints its figures; `python -m bench NAME…` runs some, no name runs all."""
