"""Clients of the node's peers: DICOMweb (WADO-RS, STOW-RS, QIDO-RS) and Orthanc's REST API."""
