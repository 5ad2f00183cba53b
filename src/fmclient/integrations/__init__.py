"""Adapters that let other frameworks use fmclient. Each module imports its framework itself, on import
of that module only: ``import fmclient`` imports none of them.

* :mod:`fmclient.integrations.langchain` — ``ChatFMClient`` and ``FMClientEmbeddings``
  (``pip install "fmclient[langchain]"``).
"""
