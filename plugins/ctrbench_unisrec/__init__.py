"""UniSRec (Hou et al., KDD 2022) as a CTR baseline: frozen-PLM item texts, a MoE whitening adaptor and a
Transformer over the user's history, contrastive pretraining, then a CTR head.

Modules: ``config`` (the knobs), ``layers`` (adaptor, sequence encoder), ``model`` (pretraining losses, the CTR
model), ``method`` (the stages), ``plugin``.
"""
