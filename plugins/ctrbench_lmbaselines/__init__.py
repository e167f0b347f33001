"""Language-model baselines the papers compare against: P5 and LlamaRec (docs/methods/baselines.md)."""
