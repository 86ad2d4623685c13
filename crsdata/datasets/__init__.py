"""The built-in datasets, one module each; importing this package registers them (:mod:`crsdata.registry`).

Add a dataset: write one module here that calls :func:`crsdata.registry.register`, and import it below.
"""

from crsdata.datasets import redial, opendialkg, opendialkg_books, inspired, crslab  # noqa: I001 (registration order is listing order)

__all__ = ["crslab", "inspired", "opendialkg", "opendialkg_books", "redial"]
