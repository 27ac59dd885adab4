"""The model artifacts vmatch trains itself, with their recipes and cards.

Installed as the package ``vmatch.artifacts`` (``pyproject.toml`` maps this folder to it), so a
wheel carries the ``.npz`` files and :func:`vmatch.models.default_models_dir` finds them through
``importlib.resources``; in a checkout they are read from here. ``fit_projection.py`` is the
recipe (run it as a script: ``python models/fit_projection.py``).
"""
