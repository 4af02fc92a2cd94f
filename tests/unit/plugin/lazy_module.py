"""Imported only by the registry's lazy-loading test."""


class LazyEndpoint:
    pass
