"""TallRec and SLLM4CTR: a LoRA-tuned causal LM answering Yes/No (docs/methods/sllm4ctr.md)."""
