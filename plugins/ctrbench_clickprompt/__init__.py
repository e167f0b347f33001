"""ClickPrompt (Lin et al., WWW 2024): CTR models as soft-prompt generators for a pretrained language model.

Modules: ``config`` (the method's knobs), ``model`` (prompt generator and the fused CTR+PLM model), ``method``
(the stages: tokenize → PA-MLM pretrain → finetune, each on the core engine), ``plugin``. The PA-MLM token
corruption and the token table are the core's text layer (``ctrbench.text``).
"""
