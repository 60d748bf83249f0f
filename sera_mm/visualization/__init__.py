"""Drawing helpers, the registered visualizer and routing statistics for
referring segmentation."""
# This package's modules subclass mmseg classes, and importing those needs
# mmcv.ops, which mmcv-lite lacks: install the pure-PyTorch fallback first
# (only that; a no-op with the compiled ops). The rest of the process setup
# is sera_mm.utils.setup_runtime(), called by the entry points.
from sera_mm.utils import mmcv_compat as _mmcv_compat

_mmcv_compat.install()
from .refer_local_visualizer import ReferLocalVisualizer  # noqa: E402
from .refer_visualizer import (  # noqa: E402
    compose_refer_panel, draw_overlay, draw_router_bars, draw_routing_chart,
    expert_weights_by_name, mask_iou, overlay_mask, router_group,
    routing_bar_data)
from .router_stats import (  # noqa: E402
    aggregate_routing, format_router_stats_csv, format_router_stats_md,
    mutual_information_bits, plot_router_heatmap, plot_router_stats,
    routing_diagnostics, routing_from_sample, write_router_stats)

__all__ = [
    'ReferLocalVisualizer', 'compose_refer_panel', 'draw_overlay',
    'draw_router_bars', 'draw_routing_chart', 'expert_weights_by_name',
    'mask_iou', 'overlay_mask', 'router_group', 'routing_bar_data',
    'aggregate_routing', 'format_router_stats_csv', 'format_router_stats_md',
    'plot_router_stats', 'routing_from_sample', 'write_router_stats',
    'mutual_information_bits', 'plot_router_heatmap', 'routing_diagnostics'
]
