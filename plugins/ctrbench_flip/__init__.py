"""FLIP (Wang et al., RecSys 2024): fine-grained alignment of an ID-based CTR model and a PLM by jointly masked
tabular/language modelling and instance-level contrastive learning, then joint fine-tuning of both towers.

Modules: ``config`` (the knobs), ``text`` (row texts whose value tokens know their field), ``model`` (the
objectives and the fused CTR model), ``method`` (the stages), ``plugin``.
"""
