"""Built-in ID-based CTR backbones (LR, FM, DNN, DCN-V2), registered through the ``ctrbench`` entry point.

One model per module, FuxiCTR style; shared layers live in ``ctrbench.models.layers``. ``plugin.py``
holds the hook that registers them.
"""
