"""r1lab: the DeepSeek-R1 post-training pipeline as composable stages declared in one YAML."""
__version__ = "0.1.0"
