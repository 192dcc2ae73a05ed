"""Alembic migrations of the node's database; applied by ``node.db.upgrade`` at start-up.

A schema change is a new file in ``versions/`` (``NNNN_what.py``, ``down_revision`` the
previous one) and the matching change to the tables in ``node/db.py``; the test of the
migrations fails while the two disagree.
"""
