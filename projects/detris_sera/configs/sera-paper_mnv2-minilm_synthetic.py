# Ablation "+ SERA-Adapter + SERA-Fusion" on the main synthetic job: the
# "+ SERA-Adapter" row with the paper's SERA-Fusion (four experts, noisy
# top-2 routing) on every level of DETRIS's neck before its sentence gates.
_base_ = './sera-paper-adapter_mnv2-minilm_synthetic.py'
model = dict(neck=dict(level_block=dict(type='RoutedExpertBlock')))
