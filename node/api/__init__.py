"""The node's HTTP API: one app (``app.create_api``), one router per concern (``jobs``,
``review``, ``deliveries``) and one exception-to-status table (``errors``)."""
