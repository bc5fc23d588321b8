"""HuggingFace transformers: training (inference and export of its checkpoints are the shared classifier
ones in common/)."""
