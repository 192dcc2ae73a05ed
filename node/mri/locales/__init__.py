"""Strings of the MRI summary image and PDF, one YAML file a language (en, ru, kk).

Loaded and checked against English by :func:`node.writers.locales.load_catalogue`; the
strings the MRI summary shares with the mammography report (the warning, the disclaimer,
clock face, quadrants, depth) come from the mammography catalogue.
"""
