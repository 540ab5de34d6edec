"""Sphinx configuration (placeholder until the documentation issue fills it in)."""

project = "tcur"
extensions = ["sphinx.ext.autodoc", "numpydoc"]
html_theme = "alabaster"
exclude_patterns = ["_build"]
