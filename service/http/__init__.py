"""The HTTP/JSON frontend under ``/v1``: a thin translation of the data plane's calls."""

from service.http.app import create_app

__all__ = ["create_app"]
