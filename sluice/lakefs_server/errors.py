"""Errors the embedded server answers with, as lakeFS does: a status code and
a JSON body ``{"message": ...}``."""

from __future__ import annotations


class APIError(Exception):
    status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(APIError):
    status = 400


class Unauthorized(APIError):
    status = 401


class Forbidden(APIError):
    status = 403


class NotFound(APIError):
    status = 404


class Conflict(APIError):
    status = 409


class MergeConflict(Conflict):
    """lakeFS answers a merge conflict with a MergeResult body
    (``{"reference": ""}``); we add the message as well."""


class PreconditionFailed(APIError):
    status = 412


class PayloadTooLarge(APIError):
    status = 413


class UnsupportedMediaType(APIError):
    status = 415


class RangeNotSatisfiable(APIError):
    status = 416

    def __init__(self, message: str, size: int):
        super().__init__(message)
        self.size = size


class ServiceUnavailable(APIError):
    status = 503
