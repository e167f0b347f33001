"""ClickPrompt (Li et al., WWW 2024): CTR models as soft-prompt generators for a pretrained language model.

Modules: ``config`` (the method's knobs), ``masking`` (PA-MLM token corruption), ``model`` (prompt generator
and the fused CTR+PLM model), ``method`` (the stages: tokenize → PA-MLM pretrain → finetune), ``plugin``.
"""
