"""Tests in a package of their own, so their conftest does not replace Testing/conftest.py as `conftest`."""
