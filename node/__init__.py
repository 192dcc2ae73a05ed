"""mammo-node: an AI node for breast-cancer screening beside a hospital PACS.

Not for clinical use: the shipped models are trained on small public or synthetic data.
"""

__version__ = "0.1.0"
