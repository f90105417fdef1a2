"""Shared helpers for the test modules (not collected by pytest: no ``test_`` prefix).

Test modules never import each other: what several of them need lives here, and fixtures live in
``tests/conftest.py``. ``tests/`` is on ``sys.path`` while pytest runs (rootdir-relative, no ``__init__.py``), so
modules import these as ``from support.net import free_port``.

- :mod:`support.net` — a free loopback port;
- :mod:`support.processes` — real subprocesses (CLI, Ray, ``mlflow server``) in their own sessions, and their clean-up;
- :mod:`support.faults` — the fault-injection tests' tiny digits space file and ``none-sweep sweep`` arguments;
- :mod:`support.results` — reading what a sweep left behind (Ray's files, the outcomes, MLflow's runs) directly;
- :mod:`support.report_store` — a real MLflow store populated with a hand-built sweep of known answers;
"""
