"""One module per upload format, each turning bytes into :class:`~.common.Page` objects.

:mod:`services.embedder.parsing` picks the parser by file extension.
"""
