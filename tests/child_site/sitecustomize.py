"""Python imports this at start-up in every process the tests start (conftest.py puts this folder
on PYTHONPATH), so that a child process, tlcli's own export check included, knows TinyNet."""

import tiny_backbone

tiny_backbone.register()
