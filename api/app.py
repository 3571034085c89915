"""The Flask application: routes, authentication, parameters, errors, access log.

``create_app(ctx)`` works with any ``ConfigStore``; ``api.server`` builds the context from
``iscsi-gateway.cfg`` and the RADOS store and serves the app.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from api import errors, routes_clients, routes_disks, routes_system, routes_targets  # noqa: F401 - routes
from api.auth import credentials_match, normalize_address
from api.context import ApiContext
from api.errors import ApiError
from api.params import Params
from api.routing import ACCESS, bp

access_log = logging.getLogger("api.access")
MAX_BODY = 1 << 20  # no request of this API needs more; larger bodies get 413


def create_app(ctx: ApiContext) -> Flask:
    app = Flask("rbd-target-api")
    app.json.sort_keys = True
    app.json.compact = True
    app.extensions["gateway_api"] = ctx
    app.url_map.strict_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.register_blueprint(bp)
    errors.register(app)

    @app.before_request
    def _authenticate() -> None:
        g.started = time.monotonic()
        g.user = "-"
        access = ACCESS.get(request.endpoint or "", "restricted")
        if access != "none":
            if access == "restricted":
                address = normalize_address(request.remote_addr)
                if not ctx.sources.allows(address):
                    shown = str(address) if address is not None else (request.remote_addr or "unknown")
                    raise ApiError(403, f"API access not available to {shown}")
            auth = request.authorization
            if auth is None or auth.type != "basic":
                raise ApiError(401, "Missing credentials")
            if not credentials_match(ctx.settings, auth.username, auth.password):
                raise ApiError(401, "username/password mismatch with the configuration file")
            g.user = auth.username or "-"
        g.params = Params.from_request(request)

    @app.after_request
    def _log(response):
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="rbd-target-api"'
        took = (time.monotonic() - g.get("started", time.monotonic())) * 1000
        # The path only: query strings and bodies may carry secrets.
        access_log.info("%s %s %s %s %d %.1fms", request.remote_addr, g.get("user", "-"), request.method,
                        request.path, response.status_code, took)
        return response

    return app
