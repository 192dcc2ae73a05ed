"""Ingest: routing rules, exam intake from Orthanc events, /changes reconciliation, HTTP API."""
