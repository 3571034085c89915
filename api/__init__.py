"""``rbd-target-api``: the REST API, compatible with ceph-iscsi's (see docs/api.md).

Modules: ``server`` (entry point), ``app`` (Flask app, authentication), ``routes_*``
(endpoints), ``params``, ``context`` (change + wait for gateways), ``images`` (RBD work),
``tasks`` (long operations), ``live`` (gateways' reported state), ``auth``, ``errors``,
``openapi``.
"""
