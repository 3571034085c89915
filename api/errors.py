"""Every failure becomes a JSON answer ``{"message": ...}`` with the status that says whose
fault it is: 4xx for the request (the message says what to fix), 503 when the cluster
cannot be reached, 500 only for our own bugs (logged with a traceback, never with secrets).
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gateway.config.errors import (
    AlreadyExists,
    ConfigError,
    NotFound,
    RetriesExhausted,
    SecretError,
    StoreError,
    ValidationError,
)

log = logging.getLogger("api")


class ApiError(Exception):
    """A request the API refuses, with the status code and what to do about it."""

    def __init__(self, status: int, message: str, **extra) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def _answer(status: int, message: str, **extra):
    response = jsonify(message=message, **extra)
    response.status_code = status
    return response


def status_for(err: ConfigError) -> int:
    """The HTTP status of a config-layer error."""
    if isinstance(err, NotFound):
        return 404
    if isinstance(err, AlreadyExists):
        return 409
    if isinstance(err, ValidationError):
        return 400
    if isinstance(err, RetriesExhausted):
        return 409
    if isinstance(err, StoreError):
        return 503
    return 500


def describe(err: Exception, where: str = "") -> tuple[int, str, dict]:
    """(status, message, extra fields) of any error, logging what deserves it."""
    if isinstance(err, ApiError):
        return err.status, err.message, err.extra
    if isinstance(err, StoreError):
        log.warning("%s: cluster unreachable: %s", where, err)
        return 503, f"the Ceph cluster cannot be reached: {err}", {}
    if isinstance(err, SecretError):
        log.error("%s: CHAP secret keys: %s", where, err)
        return 500, f"CHAP secrets cannot be processed on this gateway: {err}", {}
    if isinstance(err, ConfigError):
        return status_for(err), str(err), {}
    log.error("unhandled error in %s", where, exc_info=err)
    return 500, f"Unhandled exception: {type(err).__name__}", {}


def register(app: Flask) -> None:
    @app.errorhandler(ApiError)
    @app.errorhandler(ConfigError)
    def _known_error(err: Exception):
        status, message, extra = describe(err, f"{request.method} {request.path}")
        return _answer(status, message, **extra)

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        if isinstance(err, MethodNotAllowed):
            allowed = sorted(m for m in (err.valid_methods or []) if m not in ("HEAD", "OPTIONS"))
            response = _answer(405, f"method {request.method} is not allowed on {request.path}; "
                                    f"use {', '.join(allowed) or 'another path'}")
            response.headers["Allow"] = ", ".join(err.valid_methods or [])
            return response
        if err.code == 404:
            return _answer(404, f"no such endpoint: {request.path} (GET /api lists them)")
        return _answer(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def _unhandled(err: Exception):
        status, message, extra = describe(err, f"{request.method} {request.path}")
        return _answer(status, message, **extra)
