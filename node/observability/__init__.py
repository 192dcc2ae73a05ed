"""Metrics and logs. They subscribe to node.events; the core never imports them."""
